"""P7: provisioning over LTE-M and NB-IoT: time to the reconnect proof, round trips on the air, bytes, UART.

Three clients, each flow, each network profile of the simulator (``nrfprov.sim.network``):

- ``nrfprov``: one ``Driver.run()`` on the simulated nRF91 (Serial Modem dialect, 115200 baud) whose
  sockets cross the profile's radio;
- ``sample``: Nordic's sample's sequence replayed by our client with no optimisation (sample_sequence.py),
  on the same simulated modem and radio;
- ``awsiotsdk``: the AWS IoT Device SDK on the host, through shaped_relay.py (the same radio model and
  profile, both directions; one DNS lookup per run, which its resolver then caches).

Round trips are counted from what crossed the radio, at the device's end (airtime.py defines them).
LTE attach is not included (attach delay 0): every modem client attaches twice (the credential writes
need CFUN=4), which is the radio's time, and the host client never does. Seconds = from the start of
the run to the arrival of the proof's PUBACK at the device's radio.

Rounds: the counts and bytes are the same every round; only the time varies, and on these profiles it
is dominated by the radio (NB-IoT: 1.6 s per round trip), so NB-IoT runs once per combination and
LTE-M three times after a warm-up round (RESULTS.md gives the spread).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from airtime import AirCount, count, server_wait
from provisioning_runs import Port, modem_run_settings
from relay import CountingRelay

from nrfprov.sim.network import PROFILES, AirEvent

BAUD = 115200
CLAIM_TAG = 43
TAG = 50
NETWORKS = ("lte-m", "nb-iot")
ROUNDS = {"lte-m": 3, "nb-iot": 1}
WARMUP = {"lte-m": 1, "nb-iot": 0}
# The rows the issue asks for: each flow x backend the modem can run (combined over the modem's own TLS
# cannot: the ~3.4 KB reply exceeds its 2 KB TLS buffer).
COMBOS = [
    ("split", "pem", "offload"),
    ("split", "pem", "native"),
    ("combined", "json", "native"),
    ("combined", "cbor", "native"),
    ("csr", "json", "offload"),
    ("csr", "json", "native"),
]
REQUEST_KIND = {"split": "split", "combined": "create", "csr": "create-from-csr"}


class AirLog:
    """Collects the simulator link's AirEvents (called on the simulator's threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[AirEvent] = []

    def __call__(self, e: AirEvent) -> None:
        with self._lock:
            self._events.append(e)

    def take(self) -> list[AirEvent]:
        with self._lock:
            out, self._events = self._events, []
        return out


@contextmanager
def _modem(tmp_path: Path, network: str, stand_in: Any, backend: str,
           dialect: str = "sm") -> Iterator[tuple[Any, Port, AirLog]]:
    from nrfprov.cli.demo import SLM_TERMINATOR
    from nrfprov.sim.modem import SimulatedModem

    log = AirLog()
    # Legacy SLM with a long data-mode terminator, as `nrfprov demo` runs it (docs/modem-tools.md).
    terminator = SLM_TERMINATOR if dialect == "slm" else "+++"
    with SimulatedModem(tmp_path / "sim", dialect=dialect, baud=BAUD, attach_delay=0.0, network=network,
                        terminator=terminator) as sim:
        sim.link.observer = log
        port = Port(sim.port_url, BAUD, dialect=dialect, slm_terminator=terminator)
        try:
            modem = port.reopen()
            if backend == "offload":  # the claim identity lives in the modem (setup, untimed)
                with modem.offline():
                    modem.write_credential(CLAIM_TAG, 0, Path(stand_in.ca_path).read_text())
                    modem.write_credential(CLAIM_TAG, 1, Path(stand_in.claim_cert_path).read_text())
                    modem.write_credential(CLAIM_TAG, 2, Path(stand_in.claim_key_path).read_text())
            log.take()
            yield sim, port, log
        finally:
            port.close()




def _figures(air: AirCount, t0: float, extra: dict[str, Any]) -> dict[str, Any]:
    assert air.waited_until is not None, "no exchange was waited for"
    return {"seconds": round(air.waited_until - t0, 4), "round_trips": air.round_trips, "dns": air.dns,
            "tcp": air.tcp, "exchanges": air.exchanges, "up": air.up_bytes, "down": air.down_bytes,
            "connections": air.connections, **extra}


def _record(benchmark: Any, rounds: list[dict[str, Any]], warmup: int, **info: Any) -> None:
    measured = rounds[warmup:] or rounds
    benchmark.extra_info.update({"suite": "p7", **info, "rounds_measured": len(measured),
                                 **{k: [r[k] for r in measured] for k in measured[0] if k != "uart_by_command"}})
    if "uart_by_command" in measured[-1]:
        benchmark.extra_info["uart_by_command"] = measured[-1]["uart_by_command"]


@pytest.mark.parametrize("client", ["nrfprov", "sample"])
@pytest.mark.parametrize(("flow", "fmt", "backend"), COMBOS, ids=["-".join(c) for c in COMBOS])
@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.benchmark(group="p7-network")
def test_p7_on_the_simulated_modem(benchmark: Any, stand_in: Any, relay: CountingRelay, tmp_path: Path,
                                   network: str, flow: str, fmt: str, backend: str, client: str) -> None:
    _modem_client(benchmark, stand_in, relay, tmp_path, network, flow, fmt, backend, client)


# One combination per flow for the variants: the round trip the AWS-dependent overlap saves, and the UART
# turnarounds of legacy SLM (LTE-M only: its polls scale with the waiting, its round trips are the same).
VARIANT_COMBOS = [("split", "pem", "offload"), ("combined", "json", "native"), ("csr", "json", "offload")]
VARIANTS = [(n, "sm", "publish_before_suback") for n in NETWORKS] + [("lte-m", "slm", "")]


@pytest.mark.parametrize(("network", "dialect", "option"), VARIANTS, ids=["-".join(filter(None, v)) for v in VARIANTS])
@pytest.mark.parametrize(("flow", "fmt", "backend"), VARIANT_COMBOS, ids=["-".join(c) for c in VARIANT_COMBOS])
@pytest.mark.benchmark(group="p7-network")
def test_p7_variants(benchmark: Any, stand_in: Any, relay: CountingRelay, tmp_path: Path, network: str,
                     dialect: str, option: str, flow: str, fmt: str, backend: str) -> None:
    _modem_client(benchmark, stand_in, relay, tmp_path, network, flow, fmt, backend, "nrfprov", dialect=dialect,
                  option=option)


def _modem_client(benchmark: Any, stand_in: Any, relay: CountingRelay, tmp_path: Path, network: str, flow: str,
                  fmt: str, backend: str, client: str, *, dialect: str = "sm", option: str = "") -> None:
    from sample_sequence import run as run_sample

    from nrfprov.provisioning.driver import Driver

    certs = stand_in.write_certs_folder(tmp_path / "certs")
    base = modem_run_settings(stand_in, relay.port, certs, flow, fmt, backend, claim_tag=CLAIM_TAG,
                              provisioned_tag=TAG, response_timeout=60)
    if option:
        base = dataclasses.replace(base, **{option: True})
    if dialect == "slm":
        from nrfprov.cli.demo import SLM_TERMINATOR

        base = dataclasses.replace(base, modem_dialect="slm", slm_terminator=SLM_TERMINATOR)
    ca_pem = Path(stand_in.ca_path).read_text()
    counter = itertools.count()
    rounds: list[dict[str, Any]] = []
    state: dict[str, Any] = {}
    before = stand_in.request_counts()
    with _modem(tmp_path, network, stand_in, backend, dialect) as (sim, port, log):
        def collect() -> None:
            if not state:
                return
            assert relay.wait_idle(30), "a relayed connection did not close"
            after = sim.stats.snapshot()
            air = count(log.take(), PROFILES[network].rtt_s)
            cmds = collections.Counter(c.split("=")[0].split("?")[0] for c in list(sim.command_log)[state["log0"]:])
            rounds.append(_figures(air, state["t0"], {
                "uart_commands": after["commands"] - state["sim"]["commands"],
                "wall": round(state["t1"] - state["t0"], 4),
                "server_wait": round(server_wait(c.trace or [] for c in relay.counts()), 4),
                "uart_by_command": dict(cmds),
            }))
            state.clear()

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            collect()
            n = next(counter)
            client_id = f"p7-{flow[:2]}{backend[:2]}-{n}-{uuid.uuid4().hex[:6]}"
            modem = port.reopen()
            relay.reset()
            log.take()
            state.update(sim=sim.stats.snapshot(), log0=len(sim.command_log))
            return (client_id, modem), {}

        def run(client_id: str, modem: Any) -> None:
            state["t0"] = time.monotonic()
            if client == "nrfprov":
                settings = dataclasses.replace(base, client_id=client_id)
                # force: rounds re-provision one modem (see test_p1p2_modem.py)
                result = Driver(settings, modem, state_dir=tmp_path / f"journal-{client_id}", flow=flow,  # type: ignore[arg-type]
                                payload_format=settings.payload_format, force=True).run()
                assert result.ok
            else:
                run_sample(modem, base, flow=flow, fmt=fmt, backend=backend, claim_tag=CLAIM_TAG, tag=TAG,
                           client_id=client_id, ca_pem=ca_pem)
            state["t1"] = time.monotonic()

        relay.set_trace(True)  # the server-side chunks give the time the device waited on the cloud
        try:
            benchmark.pedantic(run, setup=setup, rounds=ROUNDS[network], iterations=1,
                               warmup_rounds=WARMUP[network])
            collect()
        finally:
            relay.set_trace(False)
    after = stand_in.request_counts()
    assert after[REQUEST_KIND[flow]] - before[REQUEST_KIND[flow]] == len(rounds)  # each round provisioned
    _record(benchmark, rounds, WARMUP[network], client=client, flow=flow, format=fmt, backend=backend,
            network=network, dialect=dialect, option=option, baud=BAUD)


SDK_FLOWS = ["split", "combined", "csr"]


@pytest.mark.parametrize("flow", SDK_FLOWS)
@pytest.mark.parametrize("network", NETWORKS)
@pytest.mark.benchmark(group="p7-network")
def test_p7_awsiotsdk(benchmark: Any, stand_in: Any, tmp_path: Path, network: str, flow: str) -> None:
    pytest.importorskip("awsiot", reason="the awsiotsdk peer is in the bench extra: make bench installs it")
    from awssdk_client import provision_once
    from shaped_relay import ShapedRelay

    rounds: list[dict[str, Any]] = []
    state: dict[str, Any] = {}
    before = stand_in.request_counts()
    with ShapedRelay(stand_in.host, stand_in.port, PROFILES[network], dns_per_run=True, trace=True) as shaped:

        def collect() -> None:
            if not state:
                return
            assert shaped.wait_idle(30), "a relayed connection did not close"
            air = count(shaped.air_events(), PROFILES[network].rtt_s)
            rounds.append(_figures(air, state["t0"], {"wall": round(state["t1"] - state["t0"], 4),
                                                      "ticket_bytes": shaped.totals()["ticket_bytes"]}))
            state.clear()

        def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
            collect()
            shaped.reset()
            return (_csr_pair() if flow == "csr" else None,), {}

        def run(csr: tuple[str, str] | None) -> None:
            provision_once("127.0.0.1", shaped.port, ca_path=str(stand_in.ca_path),
                           claim_cert_path=str(stand_in.claim_cert_path),
                           claim_key_path=str(stand_in.claim_key_path), work_dir=tmp_path, flow=flow, csr=csr,
                           on_start=lambda: state.update(t0=time.monotonic()))
            state["t1"] = time.monotonic()

        benchmark.pedantic(run, setup=setup, rounds=ROUNDS[network], iterations=1, warmup_rounds=WARMUP[network])
        collect()
    after = stand_in.request_counts()
    assert after[REQUEST_KIND[flow]] - before[REQUEST_KIND[flow]] == len(rounds)
    _record(benchmark, rounds, WARMUP[network], client="awsiotsdk", flow=flow,
            format="pem" if flow == "split" else "json", backend="awscrt", network=network)


def _csr_pair() -> tuple[str, str]:
    """An EC P-256 key and its CSR, made beforehand as the SDK's CSR sample expects them (files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sdk-csr")]))
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key_pem

