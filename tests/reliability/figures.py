"""Where the reliability harnesses put their figures (the convention of docs/reliability.md).

Each harness writes JSON rows ``{"figure", "value", "goal", "detail"}`` into the directory named by
``$NRFPROV_RELIABILITY_OUT`` (default: a fresh temporary directory): one per line in
``<harness>.jsonl`` (``write_rows``), or as one JSON list in ``<harness>.json``;
``tests/reliability/report.py DIR`` prints them all as one table.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

OUT_ENV = "NRFPROV_RELIABILITY_OUT"


def out_dir() -> Path:
    """Where figures go: ``$NRFPROV_RELIABILITY_OUT``, else one temporary directory per session."""
    chosen = os.environ.get(OUT_ENV)
    if not chosen:
        chosen = tempfile.mkdtemp(prefix="nrfprov-reliability-")
        os.environ[OUT_ENV] = chosen
    path = Path(chosen)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_rows(harness: str, rows: list[dict[str, Any]]) -> Path:
    """Append ``rows`` (each with figure, value, goal, detail) to ``<out>/<harness>.jsonl``."""
    path = out_dir() / f"{harness}.jsonl"
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            missing = {"figure", "value", "goal", "detail"} - set(row)
            assert not missing, f"figure row lacks {missing}"
            f.write(json.dumps(row) + "\n")
    return path
