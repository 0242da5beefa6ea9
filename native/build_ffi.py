"""cffi build script: compiles native/src/*.c into the extension module ``nrfprov._native``.

Used by setup.py (``cffi_modules=["native/build_ffi.py:ffibuilder"]``) and runnable directly
(``python native/build_ffi.py``) for a quick in-tree build. The cdef is the public header itself:
the text between the ``cffi-cdef-begin`` / ``cffi-cdef-end`` markers, where cffi's parser accepts
declarations and ``#define NAME <integer>`` only; anything else is refused here with a clear error
instead of a confusing one from pycparser.

``NRFPROV_NATIVE_CFLAGS`` / ``NRFPROV_NATIVE_LDFLAGS`` add compiler / linker flags (the Makefile's
``sanitize`` target uses them for an ASan + UBSan build).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = HERE / "include" / "nrfprov_core.h"
_BEGIN = "/* cffi-cdef-begin */"
_END = "/* cffi-cdef-end */"
_DEFINE = re.compile(r"#define\s+[A-Z_][A-Z0-9_]*\s+(0x[0-9A-Fa-f]+|[0-9]+)\s*$")


def cdef_text(header: Path = HEADER) -> str:
    """The cdef part of the header, checked to be something cffi can parse."""
    text = header.read_text(encoding="utf-8")
    try:
        body = text.split(_BEGIN, 1)[1].split(_END, 1)[0]
    except IndexError as exc:
        raise SystemExit(f"{header}: missing {_BEGIN} / {_END} markers") from exc
    for no, line in enumerate(body.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#") and not _DEFINE.match(stripped):
            raise SystemExit(
                f"{header}: cdef line {no} is a preprocessor line cffi cannot parse: {stripped!r} "
                "(only '#define NAME <integer>' may appear between the cffi-cdef markers)"
            )
    return body


def _rel(path: Path) -> str:
    # setuptools wants source paths relative to the project root (the build's working directory).
    try:
        return os.path.relpath(path, Path.cwd())
    except ValueError:  # other drive on Windows
        return str(path)


def make_builder(absolute_paths: bool = False) -> FFI:
    """The FFI builder; absolute paths let ``compile(tmpdir=...)`` build outside the project root."""
    where = (lambda p: str(p)) if absolute_paths else _rel
    builder = FFI()
    builder.cdef(cdef_text())
    builder.set_source(
        "nrfprov._native",
        '#include "nrfprov_core.h"\n',
        sources=[where(p) for p in sorted((HERE / "src").glob("*.c"))],
        include_dirs=[where(HERE / "include")],
        extra_compile_args=["-O2", *shlex.split(os.environ.get("NRFPROV_NATIVE_CFLAGS", ""))],
        extra_link_args=shlex.split(os.environ.get("NRFPROV_NATIVE_LDFLAGS", "")),
    )
    return builder


ffibuilder = make_builder()

if __name__ == "__main__":
    # python native/build_ffi.py [OUTDIR]: build nrfprov/_native*.so under OUTDIR (default: here),
    # e.g. the ASan build of `make sanitize`, without touching the installed extension.
    import sys

    out = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    print(make_builder(absolute_paths=True).compile(tmpdir=str(out), verbose=False))
