"""A copy of exactly what an sdist or a wheel is built from, outside the checkout.

Building in the checkout would leave build/ and *.egg-info behind and could pick up other rooms'
state folders; the packaging tests build from this copy instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", ".benchmarks",
    "_native*.so", "_native.c", "*.o", ".state", "*.log",
)  # fmt: skip


def copy_build_tree(dst: Path) -> Path:
    """Copy the packaging inputs (metadata, C sources, the Python package with its data) to ``dst``."""
    dst.mkdir()
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(ROOT / name, dst / name)
    for folder in ("native/include", "native/src", "native/test", "src"):
        shutil.copytree(ROOT / folder, dst / folder, ignore=SKIP)
    for name in ("build_ffi.py", "README.md"):
        shutil.copy2(ROOT / "native" / name, dst / "native" / name)
    return dst
