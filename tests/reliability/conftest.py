"""Fixtures of the reliability harnesses (docs/reliability.md).

Convention every harness here follows: it writes its figures as JSON rows ``{"figure", "value",
"goal", "detail"}``, one per line, into ``<harness>.jsonl`` in the directory named by
``$NRFPROV_RELIABILITY_OUT`` (default: a fresh temporary directory, printed at the end of the
session); ``tests/reliability/report.py DIR`` prints them as one table. ``make reliability`` runs
the long harnesses (marker ``reliability``) and then the report; ``make test`` runs a bounded subset
of each, which writes its rows too.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fixtures.crashrig import Lab, open_lab

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


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One local stand-in (with hooks) for a harness module; each case gets its own simulated modem."""
    root = tmp_path_factory.mktemp("lab")
    lab = open_lab(root)
    try:
        yield lab
    finally:
        lab.close()
        lab.cloud.stop()
