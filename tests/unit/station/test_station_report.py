"""The batch report: columns, appends, no PEM, and what a rerun reads back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from nrfprov.errors import LocalProtocolError, UsageError
from nrfprov.station.report import FIELDS, Report, proven_certificates


def row(imei: str, result: str, cert: str = "ab" * 32) -> dict[str, object]:
    return {"imei": imei, "result": result, "certificate_id": cert, "port": "/dev/ttyACM0", "exit_code": 0}


def test_rows_are_appended_to_csv_and_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    Report(path).append(row("1", "provisioned"))
    Report(path).append(row("2", "failed", cert=""))  # a second station run appends
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["imei"] for r in rows] == ["1", "2"] and list(rows[0]) == list(FIELDS)
    lines = (tmp_path / "batch.jsonl").read_text().splitlines()
    assert [json.loads(x)["result"] for x in lines] == ["provisioned", "failed"]
    assert proven_certificates(path) == {"1": {"ab" * 32}}


def test_pem_content_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    with pytest.raises(LocalProtocolError, match="looks like PEM"):
        Report(path).append({**row("1", "failed"), "error": "-----BEGIN RSA PRIVATE KEY-----\nMII..."})
    assert not path.exists()


def test_a_file_with_other_columns_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("name,value\nx,1\n")
    with pytest.raises(UsageError, match="not an nrfprov station report"):
        Report(path)


def test_a_row_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "batch.csv"
    Report(path).append(row("1", "skipped", cert="cd" * 32))
    with open(tmp_path / "batch.jsonl", "a") as f:
        f.write('{"imei": "2", "result": "provis')
    assert proven_certificates(path) == {"1": {"cd" * 32}}
