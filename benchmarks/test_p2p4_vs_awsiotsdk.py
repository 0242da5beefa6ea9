"""P2 (awsiotsdk row) and P4: the same provisioning flow by awsiotsdk and by nrfprov's host transport.

Flow for both: claim connect → subscribe → CreateKeysAndCertificate (json) → RegisterThing (template
``nrfprov``, SerialNumber) → disconnect → reconnect with the new certificate → QoS 1 proof publish →
disconnect. Same stand-in, same relay, same process; each round is one whole provisioning.

The timed function is the whole run for both clients (connect to final disconnect). Byte counts come
from the relay after each round (setup of the next round collects them, outside the timer).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from relay import CountingRelay

ROUNDS = 12


class _Counts:
    """Collect the relay's per-round totals from pedantic's setup hook (untimed)."""

    def __init__(self, relay: CountingRelay) -> None:
        self.relay = relay
        self.rounds: list[dict[str, int]] = []
        self.tls: set[int | None] = set()
        self._armed = False
        self.calls = 0  # runs started (warm-up included); --benchmark-disable makes it exactly one

    def setup(self) -> None:
        self.collect()
        self.relay.reset()
        self._armed = True
        self.calls += 1

    def collect(self) -> None:
        if self._armed:
            assert self.relay.wait_idle(10), "a relayed connection did not close"
            self.rounds.append(self.relay.totals())
            self.tls.update(c.tls_version for c in self.relay.counts())
            self._armed = False

    def extra(self) -> dict[str, Any]:
        # The first round is pedantic's warm-up (unless --benchmark-disable ran the target just once).
        measured = self.rounds[1:] or self.rounds
        names = {0x0303: "TLS 1.2", 0x0304: "TLS 1.3", None: "not TLS"}
        return {
            "air_up": [r["up"] for r in measured],
            "air_down": [r["down"] for r in measured],
            "ticket_bytes": [r["ticket_bytes"] for r in measured],
            "connections": measured[-1]["connections"] if measured else None,
            "tls": "/".join(sorted(names.get(v, hex(v or 0)) for v in self.tls)),
        }


def _run(benchmark: Any, relay: CountingRelay, fn: Callable[[], Any]) -> _Counts:
    counts = _Counts(relay)
    benchmark.pedantic(fn, setup=counts.setup, rounds=ROUNDS, iterations=1, warmup_rounds=1)
    counts.collect()
    return counts


@pytest.mark.benchmark(group="p4-provisioning-latency")
def test_awsiotsdk_create_keys_register_thing(benchmark: Any, stand_in: Any, relay: CountingRelay,
                                              work_dir: Path) -> None:
    pytest.importorskip("awsiot", reason="the awsiotsdk peer is in the bench extra: make bench installs it")
    from awssdk_client import provision_once

    before = stand_in.request_counts()

    def run() -> None:
        provision_once(
            "127.0.0.1", relay.port, ca_path=str(stand_in.ca_path),
            claim_cert_path=str(stand_in.claim_cert_path), claim_key_path=str(stand_in.claim_key_path),
            work_dir=work_dir,
        )

    counts = _run(benchmark, relay, run)
    after = stand_in.request_counts()
    # Every round really provisioned: one CreateKeysAndCertificate and one RegisterThing each.
    assert after["create"] - before["create"] == counts.calls
    assert after["register"] - before["register"] == counts.calls
    benchmark.extra_info.update({"suite": "p2_sdk", "client": "awsiotsdk", "flow": "combined",
                                 "format": "json", **counts.extra()})


@pytest.mark.benchmark(group="p4-provisioning-latency")
def test_nrfprov_host_transport(benchmark: Any, stand_in: Any, relay: CountingRelay) -> None:
    from provisioning_runs import host_flow

    ca, cert, key = (Path(p).read_text() for p in (stand_in.ca_path, stand_in.claim_cert_path,
                                                   stand_in.claim_key_path))
    before = stand_in.request_counts()

    def run() -> None:
        host_flow("127.0.0.1", relay.port, server_name=stand_in.server_name, ca_pem=ca, claim_cert_pem=cert,
                  claim_key_pem=key)

    counts = _run(benchmark, relay, run)
    after = stand_in.request_counts()
    assert after["create"] - before["create"] == counts.calls
    assert after["register"] - before["register"] == counts.calls
    benchmark.extra_info.update({"suite": "p4", "client": "nrfprov", "backend": "host", "flow": "combined",
                                 "format": "json", **counts.extra()})
