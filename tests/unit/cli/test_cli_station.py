"""``nrfprov station`` / ``nrfprov ports``: what is refused before any port opens, and the help text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nrfprov.cli import main

#: The least configuration that passes the checks made before any port opens.
CONF = ["--set", "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost", "--set", "CONFIG_AWS_IOT_SEC_TAG=43"]


def test_help_teaches_the_bench_workflow(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["station", "--help"])
    out = capsys.readouterr().out
    for needle in ("the bench workflow", "--report batch-0412.csv", "--watch", "skipped", "--force",
                   "nrfprov sim --count", "--jobs", "--serial-number", "Exit status"):
        assert needle in out, needle


def test_a_client_id_shared_by_every_modem_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["station", "--port", "/nonexistent/tty*", *CONF, "--set", "CONFIG_AWS_IOT_CLIENT_ID_STATIC=my-thing"])
    err = capsys.readouterr().err
    assert rc == 2 and "my-thing" in err and "{imei}" in err


def test_a_report_that_is_no_csv_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["station", "--port", "/nonexistent/tty*", *CONF, "--report", str(tmp_path / "batch.jsonl")])
    assert rc == 2 and "batch.csv" in capsys.readouterr().err


def test_no_port_matches_is_an_empty_batch(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["station", "--port", str(tmp_path / "nothing-*"), *CONF, "--json"])
    out = capsys.readouterr()
    events = [json.loads(x) for x in out.out.splitlines()]
    assert rc == 0 and events == [{**events[0], "event": "summary", "devices": 0, "exit_code": 0}]
    assert "no modem found" in out.err


def test_ports_with_nothing_plugged_in(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["ports", "--port", str(tmp_path / "nothing-*"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
