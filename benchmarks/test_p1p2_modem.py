"""P1 and P2: whole provisioning runs on the simulated nRF91 at 115200 baud, each flow x format x backend.

One round = one ``Driver.run()`` (the real 12-step chain: LTE up, claim connect, request, receive,
RegisterThing, disconnect, CFUN=4, %CMNG writes verified, CFUN=1, reconnect + proof publish) against the
local stand-in. The modem's sockets dial the counting relay, so bytes on the air are counted exactly as
for the awsiotsdk peer (test_p2p4_vs_awsiotsdk.py).

- P1: wall time ÷ (UART bytes both ways ÷ 11,520 B/s), the UART bytes counted by the simulator.
- P2: TCP payload bytes both ways through the relay (TLS included), per provisioning.

Setup outside the timer: the simulator, the modem port, the claim credentials (sec tag for offload,
certs folder for native), a fresh journal directory and a fresh client id per round.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airtime import quota_floor, server_wait
from provisioning_runs import Port, modem_run_settings
from relay import CountingRelay

BAUD = 115200
ROUNDS = 5
CLAIM_TAG = 43
PROVISIONED_TAG = 50

# Every combination that should work (`nrfprov demo` lists combined over offloaded TLS as the expected
# failure: the ~3.4 KB message exceeds the modem's 2 KB TLS buffer). Split publishes raw PEM: no format.
# csr always reconnects over the modem's TLS (its key never leaves the modem), whatever the backend.
COMBINATIONS = [
    ("split", "pem", "native"),
    ("split", "pem", "offload"),
    ("combined", "json", "native"),
    ("combined", "cbor", "native"),
    ("csr", "json", "native"),
    ("csr", "json", "offload"),
    ("csr", "cbor", "offload"),
    # host: TLS over the host's own TCP (a factory station); the modem only gets CFUN and %CMNG writes.
    ("split", "pem", "host"),
    ("combined", "json", "host"),
    ("combined", "cbor", "host"),
    ("csr", "json", "host"),
]


class _LineTimes:
    """The simulator link's events, each with the UART line time (both directions) at that moment."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.samples: list[tuple[Any, float]] = []
        self._lock = threading.Lock()

    def line(self) -> float:
        _rx, _tx, rx_s, tx_s = self.sim.stats.uart_snapshot()
        return float(rx_s + tx_s)

    def __call__(self, event: Any) -> None:
        with self._lock:
            self.samples.append((event, self.line()))

    def take(self) -> list[tuple[Any, float]]:
        with self._lock:
            out, self.samples = self.samples, []
        return out


@pytest.fixture
def sim_modem(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    from nrfprov.sim.modem import SimulatedModem

    with SimulatedModem(tmp_path / "sim", dialect="sm", baud=BAUD, attach_delay=0.0) as sim:
        sim.link.observer = _LineTimes(sim)
        port = Port(sim.port_url, BAUD)
        try:
            yield sim, port
        finally:
            port.close()




@pytest.mark.parametrize(("flow", "fmt", "backend"), COMBINATIONS, ids=["-".join(c) for c in COMBINATIONS])
@pytest.mark.benchmark(group="p1p2-provisioning-115200")
def test_provision_on_simulated_modem(benchmark: Any, stand_in: Any, relay: CountingRelay,
                                      sim_modem: tuple[Any, Any], tmp_path: Path,
                                      flow: str, fmt: str, backend: str) -> None:
    from nrfprov.provisioning.driver import Driver

    sim, port = sim_modem
    modem = port.reopen()
    lines: _LineTimes = sim.link.observer  # type: ignore[assignment]
    certs = stand_in.write_certs_folder(tmp_path / "certs")
    if backend == "offload":
        # The claim identity lives in the modem for offloaded TLS, as on a real device (setup, untimed).
        with modem.offline():
            modem.write_credential(CLAIM_TAG, 0, Path(stand_in.ca_path).read_text())
            modem.write_credential(CLAIM_TAG, 1, Path(stand_in.claim_cert_path).read_text())
            modem.write_credential(CLAIM_TAG, 2, Path(stand_in.claim_key_path).read_text())
    base = modem_run_settings(stand_in, relay.port, certs, flow, fmt, backend, claim_tag=CLAIM_TAG,
                              provisioned_tag=PROVISIONED_TAG, response_timeout=30)
    counter = itertools.count()
    rounds: list[dict[str, Any]] = []
    pending: dict[str, Any] = {}

    def collect() -> None:
        if not pending:
            return
        assert relay.wait_idle(10), "a relayed connection did not close"
        after = sim.stats.snapshot()
        before = pending.pop("sim")
        totals = relay.totals()
        waited = server_wait(c.trace or [] for c in relay.counts())
        driver = pending.pop("driver")
        same_id = driver.result.thing_name == driver.settings.client_id  # the reconnect waits for the quota
        quota = quota_floor(lines.take(), pending.pop("line0"), lines.line()) if same_id else None
        rounds.append({
            "uart_rx": after["uart_rx"] - before["uart_rx"],
            "uart_tx": after["uart_tx"] - before["uart_tx"],
            "sim_air": after["air_tx"] - before["air_tx"] + after["air_rx"] - before["air_rx"],
            "air_up": totals["up"], "air_down": totals["down"], "ticket_bytes": totals["ticket_bytes"],
            "connections": totals["connections"], "server_wait": waited, "quota_floor": quota,
            "result": driver.result,
        })

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        collect()
        n = next(counter)
        settings = dataclasses.replace(base, client_id=f"p1-{flow}-{backend}-{n}-{uuid.uuid4().hex[:6]}")
        # A fresh port per round, as every `nrfprov provision` opens it (untimed). Every round provisions
        # the same modem again, so it replaces the last round's identity (--force: the sec tag is listed
        # in every fresh run anyway, force only lets the run go on).
        driver = Driver(settings, port.reopen(), state_dir=tmp_path / f"journal-{n}", flow=flow,
                        payload_format=settings.payload_format, force=True)
        relay.reset()
        lines.take()
        pending.update(sim=sim.stats.snapshot(), driver=driver, line0=lines.line())
        return (driver,), {}

    def run(driver: Any) -> None:
        driver.run()

    before = stand_in.request_counts()
    relay.set_trace(True)  # the server-side chunks give the time the device waited on the cloud (honest floor)
    try:
        benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
        collect()
    finally:
        relay.set_trace(False)
    measured = rounds[1:] or rounds  # round 0 is the warm-up (--benchmark-disable: the only round)
    assert all(r["result"].ok for r in rounds)
    after = stand_in.request_counts()
    # One certificate request per round, never a retry hidden inside a round.
    key = {"split": "split", "combined": "create", "csr": "create-from-csr"}[flow]
    assert after[key] - before[key] == len(rounds)
    benchmark.extra_info.update({
        "suite": "p1p2", "flow": flow, "format": fmt, "backend": backend, "dialect": "sm", "baud": BAUD,
        "uart_bytes": [r["uart_rx"] + r["uart_tx"] for r in measured],
        "uart_rx": [r["uart_rx"] for r in measured],
        "uart_tx": [r["uart_tx"] for r in measured],
        "air_up": [r["air_up"] for r in measured],
        "air_down": [r["air_down"] for r in measured],
        "ticket_bytes": [r["ticket_bytes"] for r in measured],
        "sim_air_bytes": [r["sim_air"] for r in measured],
        "server_wait": [round(r["server_wait"], 4) for r in measured],
        "quota_floor": [None if r["quota_floor"] is None else round(r["quota_floor"], 4) for r in measured],
        "connections": measured[-1]["connections"],
        "tls": "TLS 1.2",
        "steps": [{"step": s.state.value, "seconds": round(s.seconds, 3)} for s in measured[-1]["result"].steps],
    })
