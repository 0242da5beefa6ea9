"""``Station`` on a bench of simulated modems against the stand-in: a batch, a rerun, failures, throttling.

Witnesses are the peers, never the station's own word: the stand-in's registry and request counters
(certificates issued, requests throttled), the simulators' credential stores and air byte counters
(a modem that opened no socket contacted no cloud) and the report files on disk.
"""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from benchrig import PEM_KEY_MARKERS, TAG, Bench
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.console import Console

from nrfprov.cli.station_view import LiveView
from nrfprov.station import FIELDS, Station, StationOptions, StationSummary

pytestmark = pytest.mark.integration


def run_station(bench: Bench, *extra: str, events: list[dict[str, Any]] | None = None,
                **options: Any) -> StationSummary:
    options.setdefault("patterns", (bench.pattern,))
    opts = StationOptions(state_root=bench.journals, report=bench.report, **options)
    out: list[dict[str, Any]] = events if events is not None else []
    return Station(bench.settings(*extra), opts, emit=out.append, comports=lambda: []).run()


def certificates_of(bench: Bench) -> dict[str, str]:
    """What sec tag 50 of each modem holds: IMEI -> AWS certificate id (SHA-256 of the DER) of its client
    certificate, "" when none."""
    out = {}
    for s in bench.sims:
        pem = s.stored(TAG).get(1, "")
        der = x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER) if pem else b""
        out[s.identity.imei] = hashlib.sha256(der).hexdigest() if pem else ""
    return out


def test_ten_modems_in_one_run_then_a_rerun_skips_all_without_the_cloud(bench_factory: Callable[..., Bench]) -> None:
    bench = bench_factory(10)
    events: list[dict[str, Any]] = []
    summary = run_station(bench, events=events)
    assert (summary.provisioned, summary.failed, summary.exit_code) == (10, 0, 0), summary.as_dict()

    rows = bench.report_rows()
    assert len(rows) == 10 and all(list(r) == list(FIELDS) for r in rows)
    with open(bench.report, newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert [r["imei"] for r in csv_rows] == [r["imei"] for r in rows]
    registry = {c.certificate_id: c for c in bench.cloud.certificates()}
    imeis = {s.identity.imei for s in bench.sims}
    assert {r["imei"] for r in rows} == imeis
    for r in rows:
        assert r["result"] == "provisioned" and r["exit_code"] == 0 and r["error_class"] == ""
        assert r["certificate_id"] in registry and r["thing_name"] == f"nrf-{r['imei']}"
        assert (r["flow"], r["format"], r["backend"], r["sec_tag"]) == ("split", "json", "offload", TAG)
        assert r["uart_bytes"] > 0 and r["air_bytes"] > 0 and r["seconds"] > 0 and r["station"]
    # Each modem holds exactly the certificate its row names (the stand-in's record of it).
    held = certificates_of(bench)
    assert held == {r["imei"]: r["certificate_id"] for r in rows}
    # No key material in either file.
    for path in (bench.report, bench.report.with_suffix(".jsonl")):
        text = path.read_text()
        assert not any(mark in text for mark in PEM_KEY_MARKERS), path
    assert sum(e["event"] == "result" for e in events) == 10 and events[-1]["event"] == "summary"
    # The live view's "step k of n" counts the machine's states: a fresh split run has 11, the sample's
    # 12 steps with "receive key" and "receive certificate" as one state; each is reached.
    steps = [e for e in events if e["event"] == "device" and e["steps"]]
    assert {e["steps"] for e in steps} == {11}
    assert {e["step"] for e in steps if e["imei"] == rows[0]["imei"]} == set(range(1, 12))

    # The rerun: every modem is recognised as done before any socket opens.
    requests, air, certs = bench.cloud.request_counts(), bench.air_bytes(), len(bench.cloud.certificates())
    again = run_station(bench)
    assert (again.skipped, again.provisioned, again.failed, again.exit_code) == (10, 0, 0, 0), again.as_dict()
    assert bench.cloud.request_counts() == requests
    assert bench.air_bytes() == air
    assert len(bench.cloud.certificates()) == certs
    assert certificates_of(bench) == held
    assert [r["result"] for r in bench.report_rows()[10:]] == ["skipped"] * 10


def test_a_dropped_link_and_a_full_modem_fail_alone_and_succeed_on_a_rerun(bench_factory: Callable[..., Bench]) -> None:
    bench = bench_factory(10)
    dropped, full = bench.sims[3], bench.sims[7]

    def pull_the_cable(text: str) -> None:
        if text.upper().startswith(f"AT%CMNG=0,{TAG},1"):  # the client certificate's write arrived
            dropped.on_command = None
            dropped.drop_link_after(0)

    dropped.on_command = pull_the_cable
    full.fail_command(f"AT%CMNG=0,{TAG},1", cme=515, times=1)  # CME 515: memory full [nRF91 AT manual, %CMNG]

    summary = run_station(bench)
    rows = {r["port"]: r for r in bench.report_rows()}
    bad = {str(bench.root / "nrf91-3"), str(bench.root / "nrf91-7")}
    assert (summary.provisioned, summary.failed) == (8, 2), summary.as_dict()
    assert {p for p, _, _, _ in summary.problems} == bad
    assert summary.exit_code == 7  # credential write failed outranks the lost link (3)
    assert rows[str(bench.root / "nrf91-7")]["error_class"] == "CredentialError"
    assert rows[str(bench.root / "nrf91-7")]["exit_code"] == 7
    assert rows[str(bench.root / "nrf91-3")]["exit_code"] == 3
    assert rows[str(bench.root / "nrf91-3")]["error_class"] == "ModemLinkError"  # the cable, not the modem
    assert all(r["result"] == "provisioned" for p, r in rows.items() if p not in bad)
    issued = {c.certificate_id for c in bench.cloud.certificates()}
    assert len(issued) == 10

    bench.replug(3)  # the operator plugs the cable back in
    again = run_station(bench)
    assert (again.resumed, again.skipped, again.failed, again.exit_code) == (2, 8, 0, 0), again.as_dict()
    assert {c.certificate_id for c in bench.cloud.certificates()} == issued  # no second certificate
    last = {r["port"]: r for r in bench.report_rows()[10:]}
    assert {p for p, r in last.items() if r["result"] == "resumed"} == bad
    held = certificates_of(bench)
    assert all(held[r["imei"]] == r["certificate_id"] for r in last.values())


def test_the_station_stays_under_the_clouds_request_rate(bench_factory: Callable[..., Bench]) -> None:
    # The stand-in throttles above 2 requests/s (burst 2); ten modems ask at once. The station's
    # bucket at 1/s with a burst of 1 keeps every request under that, with room for the time between
    # a token and its request reaching the cloud on a loaded machine: nothing is throttled.
    bench = bench_factory(10, request_rate=2.0, request_burst=2)
    summary = run_station(bench, "CONFIG_NRFPROV_STATION_REQUEST_RATE=1", "CONFIG_NRFPROV_STATION_REQUEST_BURST=1")
    assert (summary.provisioned, summary.exit_code) == (10, 0), summary.as_dict()
    assert sum(bench.cloud.throttled_counts().values()) == 0
    assert bench.cloud.request_counts()["split"] == 10


def test_throttled_requests_are_repeated_and_no_device_fails(bench_factory: Callable[..., Bench]) -> None:
    # The station's bucket set far above the stand-in's limit: the cloud throttles, the devices back
    # off (jittered) and repeat; all succeed, with one certificate each.
    bench = bench_factory(10, request_rate=2.0, request_burst=2)
    summary = run_station(bench, "CONFIG_NRFPROV_STATION_REQUEST_RATE=100", "CONFIG_NRFPROV_STATION_REQUEST_BURST=100")
    assert (summary.provisioned, summary.failed, summary.exit_code) == (10, 0, 0), summary.as_dict()
    assert bench.cloud.throttled_counts()["split"] > 0
    assert len(bench.cloud.certificates()) == 10
    assert max(r["attempts"] for r in bench.report_rows()) > 1


def test_watch_provisions_a_modem_plugged_in_while_running(bench_factory: Callable[..., Bench]) -> None:
    bench = bench_factory(2)
    done: list[str] = []
    plugged = threading.Event()
    station: Station | None = None

    def on_event(e: dict[str, Any]) -> None:
        if e["event"] != "result":
            return
        done.append(e["imei"])
        if len(done) == 2 and not plugged.is_set():
            plugged.set()
            bench.add_modem()  # plugged in while the station watches
        elif len(done) == 3 and station is not None:
            station.stop()

    opts = StationOptions(patterns=(bench.pattern,), state_root=bench.journals, report=bench.report, watch=True,
                          poll_s=0.1)
    station = Station(bench.settings(), opts, emit=on_event, comports=lambda: [])
    summary = station.run()
    assert summary.provisioned == 3 and summary.failed == 0
    assert sorted(done) == sorted(s.identity.imei for s in bench.sims)
    assert summary.exit_code == 130  # stopped as by Ctrl-C, nothing failed
    # The live view of the finished batch: one row per device with its IMEI and result, and the totals.
    console = Console(file=io.StringIO(), width=160, height=40, color_system=None)
    console.print(LiveView(station, console))
    screen = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(imei in screen for imei in done) and screen.count("provisioned") == 3
    assert "done 3" in screen and "failed 0" in screen and "11/11" in screen


def test_done_is_told_from_the_journal_or_the_report_and_a_foreign_certificate_needs_force(
        bench_factory: Callable[..., Bench], tmp_path: Path) -> None:
    bench = bench_factory(3)
    # Modem 2 holds a client certificate nobody here issued (another tool, an earlier batch).
    bench.sims[2].store.put(TAG, 1, bench.cloud.claim_cert_path.read_text())
    first = run_station(bench)
    assert (first.provisioned, first.failed, first.exit_code) == (2, 1, 2), first.as_dict()
    foreign = next(r for r in bench.report_rows() if r["imei"] == bench.sims[2].identity.imei)
    assert (foreign["result"], foreign["error_class"]) == ("failed", "AlreadyProvisioned")

    # The journals are lost (another PC, a wiped disk): the report still proves modems 0 and 1.
    shutil.rmtree(bench.journals)
    air = bench.air_bytes()
    again = run_station(bench, patterns=(str(bench.root / "nrf91-[01]"),))
    assert (again.skipped, again.exit_code) == (2, 0), again.as_dict()
    assert bench.air_bytes() == air
    # Neither journal nor report: a certificate in the sec tag is someone else's until --force.
    other = Station(bench.settings(), StationOptions(patterns=(str(bench.root / "nrf91-0"),),
                                                     state_root=tmp_path / "elsewhere"), comports=lambda: []).run()
    assert (other.failed, other.exit_code) == (1, 2)

    forced = run_station(bench, patterns=(str(bench.root / "nrf91-2"),), force=True)
    assert (forced.provisioned, forced.exit_code) == (1, 0), forced.as_dict()
    assert certificates_of(bench)[bench.sims[2].identity.imei] == bench.report_rows()[-1]["certificate_id"]


def test_a_port_another_nrfprov_holds_is_reported_busy_and_left_alone(bench_factory: Callable[..., Bench]) -> None:
    from nrfprov.modem import Modem
    from nrfprov.station import Candidate, probe

    bench = bench_factory(3)
    held = Modem.open(str(bench.root / "nrf91-1"))  # e.g. a terminal someone left open with nrfprov at
    try:
        commands = bench.sims[1].stats.snapshot()["commands"]
        assert probe(Candidate(str(bench.root / "nrf91-1"))).status == "busy"
        summary = run_station(bench)
        assert (summary.provisioned, summary.busy, summary.exit_code) == (2, 1, 2), summary.as_dict()
        assert bench.sims[1].stats.snapshot()["commands"] == commands  # not a byte was sent to it
    finally:
        held.close()
    again = run_station(bench)
    assert (again.provisioned, again.skipped, again.exit_code) == (1, 2, 0), again.as_dict()
