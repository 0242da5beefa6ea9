"""``nrfprov demo --json`` end to end (one flow, unthrottled, to keep the suite fast)."""

from __future__ import annotations

import json

import pytest

from nrfprov.cli import main

pytestmark = pytest.mark.integration


def test_demo_json_combined_rows(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["demo", "--flow", "combined", "--baud", "0", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert {tuple(sorted(r)) for r in rows} == {tuple(sorted(
        ["flow", "format", "backend", "dialect", "ok", "expected_failure", "seconds", "uart_bytes", "air_bytes",
         "error"]))}
    failing = [r for r in rows if r["expected_failure"]]
    assert failing and all(not r["ok"] and "2 KB" in r["error"] for r in failing)
    working = [r for r in rows if not r["expected_failure"]]
    assert all(r["ok"] and r["uart_bytes"] > 0 for r in working), [r for r in working if not r["ok"]]
    assert all(r["air_bytes"] > 0 for r in working if r["backend"] != "host")
    assert rc == 0
