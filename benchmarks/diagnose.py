"""Repeat the measurements behind notes.md: where a provisioning run spends its time.

    .venv/bin/python benchmarks/diagnose.py trace host   # nrfprov host transport, relay trace per chunk
    .venv/bin/python benchmarks/diagnose.py trace sdk    # awsiotsdk, same flow
    .venv/bin/python benchmarks/diagnose.py stand-in     # time the stand-in's handle() and broker reloads

Each starts its own stand-in in a temporary directory and stops it at the end.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from relay import CountingRelay


def _run(kind: str, cloud: Any, port: int, work: Path) -> None:
    if kind == "sdk":
        from awssdk_client import provision_once

        provision_once("127.0.0.1", port, ca_path=str(cloud.ca_path), claim_cert_path=str(cloud.claim_cert_path),
                       claim_key_path=str(cloud.claim_key_path), work_dir=work)
    else:
        from provisioning_runs import host_flow

        ca, cc, ck = (Path(p).read_text() for p in (cloud.ca_path, cloud.claim_cert_path, cloud.claim_key_path))
        host_flow("127.0.0.1", port, server_name=cloud.server_name, ca_pem=ca, claim_cert_pem=cc, claim_key_pem=ck)


def trace(kind: str) -> None:
    from nrfprov.cloud.local import LocalAwsIot

    with tempfile.TemporaryDirectory() as tmp, LocalAwsIot(Path(tmp) / "cloud") as cloud, \
            CountingRelay(cloud.host, cloud.port, trace=True) as relay:
        _run(kind, cloud, relay.port, Path(tmp))  # warm-up (imports, awscrt event loop)
        relay.wait_idle()
        relay.reset()
        _run(kind, cloud, relay.port, Path(tmp))
        relay.wait_idle()
        for i, c in enumerate(relay.counts()):
            print(f"--- {kind} connection {i}: {c.up} B up, {c.down} B down, TLS {hex(c.tls_version or 0)}, "
                  f"{c.ticket_records} tickets ({c.ticket_bytes} B)")
            assert c.trace is not None
            t0 = prev = c.trace[0][0]
            for t, direction, n in c.trace:
                print(f"{(t - t0) * 1e3:8.1f} ms (+{(t - prev) * 1e3:6.1f})  {direction:<4} {n:6d} B")
                prev = t


def stand_in() -> None:
    from nrfprov.cloud.local import LocalAwsIot

    with tempfile.TemporaryDirectory() as tmp, LocalAwsIot(Path(tmp) / "cloud") as cloud:
        svc, broker = cloud._service, cloud._broker  # diagnostics only: wrap, time, delegate
        assert svc is not None and broker is not None
        handle, reload = svc.handle, broker.reload

        def timed_handle(topic: str, payload: bytes) -> Any:
            t = time.perf_counter()
            out = handle(topic, payload)
            print(f"  handle {topic:<55} {(time.perf_counter() - t) * 1e3:6.1f} ms")
            return out

        def timed_reload(*a: Any, **kw: Any) -> None:
            t = time.perf_counter()
            reload(*a, **kw)
            print(f"    broker reload (SIGHUP until logged) {(time.perf_counter() - t) * 1e3:6.1f} ms")

        svc.handle = timed_handle  # type: ignore[method-assign]
        broker.reload = timed_reload  # type: ignore[method-assign]
        for _ in range(3):
            t = time.perf_counter()
            _run("host", cloud, cloud.port, Path(tmp))
            print(f"run {(time.perf_counter() - t) * 1e3:.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("trace", help="relay trace of one provisioning run")
    t.add_argument("client", choices=["host", "sdk"])
    sub.add_parser("stand-in", help="time the stand-in's request handling and broker reloads")
    args = ap.parse_args()
    if args.cmd == "trace":
        trace(args.client)
    else:
        stand_in()
    return 0


if __name__ == "__main__":
    sys.exit(main())
