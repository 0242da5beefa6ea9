"""Fast checks that the benchmark harness itself is right (part of the normal suite; no --benchmark-only).

- The relay forwards and counts exactly, both ways, and half-closes like TCP.
- It reads the negotiated TLS version, and what it calls TLS 1.3 session tickets is exactly what the
  server's tickets cost: the same exchange with ``num_tickets = 0`` is lighter by that many bytes.
- report.py turns a pytest-benchmark export into summary.json and RESULTS.md with the right ratios and
  goals, P7 included (the PNGs need matplotlib from the bench extra, so ``make bench`` draws them).
- P7's plumbing: round trips counted from radio events as airtime.py defines them, and the shaped relay
  puts the profile's delay, the TCP handshake and a DNS lookup between a client and a server.

Real peers only: Python's ssl (OpenSSL) on 127.0.0.1 on both ends of the relay.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent))

from relay import LOOPBACK, CountingRelay

TIMEOUT = 5.0


@pytest.fixture(scope="module")
def server_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = d / "cert.pem", d / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    return cert_path, key_path


class _Server:
    """One-connection-at-a-time server: optional TLS; answers each message with a fixed-size reply."""

    def __init__(self, ctx: ssl.SSLContext | None, reply: bytes) -> None:
        self.ctx, self.reply = ctx, reply
        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.received = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(TIMEOUT)
            c: socket.socket = self.ctx.wrap_socket(conn, server_side=True) if self.ctx else conn
            with c:
                while data := c.recv(65536):
                    self.received += len(data)
                    c.sendall(self.reply)
                if isinstance(c, ssl.SSLSocket):
                    c.unwrap()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone does not on Linux
        self.sock.close()
        self.thread.join(TIMEOUT)


@pytest.fixture
def plain_server() -> Iterator[_Server]:
    srv = _Server(None, b"r" * 777)
    yield srv
    srv.close()


def test_relay_counts_exact_bytes_both_ways(plain_server: _Server) -> None:
    with CountingRelay(LOOPBACK, plain_server.port) as relay:
        with socket.create_connection((LOOPBACK, relay.port), timeout=TIMEOUT) as c:
            for size in (1, 1000, 100_000):
                c.sendall(b"x" * size)
            c.shutdown(socket.SHUT_WR)  # the relay must pass the half-close on, or this read never ends
            got = 0
            while chunk := c.recv(65536):
                got += len(chunk)
        assert relay.wait_idle(TIMEOUT)
        totals = relay.totals()
    assert totals["up"] == 101_001 == plain_server.received
    assert totals["down"] == got >= 777
    assert totals["connections"] == 1
    assert totals["ticket_bytes"] == 0


def _tls_exchange(port: int, cert: Path, version: ssl.TLSVersion) -> int:
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.maximum_version = version
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection((LOOPBACK, port), timeout=TIMEOUT) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(raw, server_hostname="localhost") as c:
            c.sendall(b"CONNECT")
            assert c.recv(100) == b"ACK"
            c.sendall(b"PUBLISH" * 10)
            assert c.recv(100) == b"ACK"
            c.unwrap()
    return 0


@pytest.mark.parametrize("num_tickets", [2, 0])
def test_relay_sees_tls_version_and_tls13_tickets(server_pem: tuple[Path, Path], num_tickets: int) -> None:
    cert, key = server_pem
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.num_tickets = num_tickets  # TLS 1.3
    if not num_tickets:
        sctx.options |= ssl.OP_NO_TICKET  # TLS 1.2 (the stand-in's setting in benchmarks, standin_process.py)
    srv = _Server(sctx, b"ACK")
    try:
        with CountingRelay(LOOPBACK, srv.port) as relay:
            _tls_exchange(relay.port, cert, ssl.TLSVersion.TLSv1_2)
            assert relay.wait_idle(TIMEOUT)
            (c12,) = relay.counts()
            relay.reset()
            _tls_exchange(relay.port, cert, ssl.TLSVersion.TLSv1_3)
            assert relay.wait_idle(TIMEOUT)
            (c13,) = relay.counts()
    finally:
        srv.close()
    assert c12.tls_version == 0x0303
    assert c12.ticket_records == (1 if num_tickets else 0)  # TLS 1.2: one, in clear, before the CCS
    assert c13.tls_version == 0x0304
    assert c13.ticket_records == num_tickets
    if num_tickets:
        assert c13.ticket_bytes > 100 * num_tickets
    # Remember the downloads for the cross-check in the next test.
    _DOWN[(13, num_tickets)] = (c13.down, c13.ticket_bytes)
    _DOWN[(12, num_tickets)] = (c12.down, c12.ticket_bytes)


_DOWN: dict[tuple[int, int], tuple[int, int]] = {}


@pytest.mark.parametrize("version", [12, 13])
def test_ticket_bytes_are_what_the_tickets_cost(version: int) -> None:
    if {k for k in _DOWN if k[0] == version} != {(version, 0), (version, 2)}:
        pytest.fail("runs after test_relay_sees_tls_version_and_tls13_tickets; run the whole module")
    down2, tickets2 = _DOWN[(version, 2)]
    down0, tickets0 = _DOWN[(version, 0)]
    assert tickets0 == 0 and tickets2 > 100
    # ECDSA signatures vary by a couple of bytes (DER integers); a TLS 1.2 server that issues no ticket
    # sends a 32-byte session id in its ServerHello instead of an empty one [RFC 5077 §3.4].
    slack = 8 + (32 if version == 12 else 0)
    assert abs((down2 - tickets2) - down0) <= slack, (down2, tickets2, down0)


def _fake_export(tmp: Path) -> Path:
    def rec(file: str, name: str, median: float, extra: dict[str, object], params: dict[str, object]
            ) -> dict[str, object]:
        return {
            "group": None, "name": name, "fullname": f"benchmarks/{file}::{name}", "params": params,
            "extra_info": extra,
            "stats": {"median": median, "mean": median, "min": median, "rounds": 3},
        }

    air = {"air_up": [1000, 1000, 1000], "air_down": [3000, 3000, 3000], "ticket_bytes": [0, 0, 0],
           "tls": "TLS 1.2", "connections": 2}
    benches = [
        rec("test_provisioning.py", "combined-json-native", 2.0,
            {"suite": "p1p2", "flow": "combined", "format": "json", "backend": "native",
             "uart_bytes": [11520, 11520, 11520], "uart_rx": [5000] * 3, "uart_tx": [6520] * 3, **air}, {}),
        rec("test_awsiotsdk.py", "sdk", 0.5,
            {"suite": "p2_sdk", "air_up": [2000] * 3, "air_down": [9000] * 3, "ticket_bytes": [3000] * 3,
             "tls": "TLS 1.3", "connections": 2}, {}),
        rec("test_awsiotsdk.py", "ours-host", 0.25, {"suite": "p4", "backend": "host", **air}, {}),
        rec("test_p3_bridge.py", "test_bridge[4.5k]", 0.002, {}, {"size": 4500}),
        rec("test_p3_bridge.py", "test_paho_openssl[4.5k]", 0.001, {}, {"size": 4500}),
        rec("test_p5_extractor.py", "test_c[json-4500]", 0.0001, {"impl": "c"}, {"size": 4500, "format": "json"}),
        rec("test_p5_extractor.py", "test_py[json-4500]", 0.0003, {"impl": "python"},
            {"size": 4500, "format": "json"}),
        # P7: one flow on nb-iot, each client; awsiotsdk has one fewer round trip, takes 20 s.
        *(rec("test_p7_network.py", f"p7-{client}", secs,
              {"suite": "p7", "client": client, "flow": "combined", "format": "json" if client != "x" else "",
               "backend": backend, "network": "nb-iot", "rounds_measured": 1, "seconds": [secs],
               "round_trips": [rt], "dns": [1], "tcp": [2], "exchanges": [rt - 3], "up": [up], "down": [4000],
               "uart_commands": [40] if client != "awsiotsdk" else []}, {})
          for client, backend, secs, rt, up in (("nrfprov", "native", 18.0, 11, 2000),
                                                ("sample", "native", 22.0, 14, 2100),
                                                ("awsiotsdk", "awscrt", 20.0, 10, 4000))),
    ]
    raw = {"machine_info": {"node": "n", "system": "Linux", "release": "x", "machine": "x86_64",
                            "python_implementation": "CPython", "python_version": "3.11",
                            "cpu": {"brand_raw": "test cpu", "count": 2}},
           "commit_info": {"id": "abc", "dirty": False}, "datetime": "now", "benchmarks": benches}
    path = tmp / "raw.json"
    path.write_text(json.dumps(raw))
    return path


def test_report_computes_ratios_and_writes_summary_and_results(tmp_path: Path) -> None:
    """The PNG needs matplotlib (bench extra only); make bench draws it, this checks the numbers."""
    import report

    out = tmp_path / "results"
    md = tmp_path / "RESULTS.md"
    assert report.main([str(_fake_export(tmp_path)), "--out", str(out), "--results-md", str(md),
                        "--notes", str(tmp_path / "none.md"), "--no-plot"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["p1_uart_ratio"]["combined"]["native"]["ratio"] == 2.0  # 2 s over a 1 s floor
    assert s["p2_air_bytes"]["awsiotsdk"]["total_without_tickets"] == 8000
    assert s["p3_bridge_vs_openssl"]["4500"]["ratio"] == 0.5
    assert s["p4_vs_awsiotsdk"]["ratio"] == 0.5
    assert s["p5_c_vs_python"]["json"]["4500"]["ratio"] == 3.0
    g = s["goals"]
    # P2 is judged on P7's bytes when P7 ran (6000 against awsiotsdk's 8000), P4 against 0.3.
    assert (g["p1"]["met"], g["p2"]["met"], g["p3"]["met"], g["p4"]["met"], g["p5"]["met"]) == (
        False, True, False, False, True)
    assert g["p2"]["measured"] == 0.75
    # P7: 11 round trips = combined's minimum (10) + 1, below the sample (14) but not below awsiotsdk (10);
    # 18 s against awsiotsdk's 20 s on nb-iot = 0.9, above 0.75.
    rt = g["p7_round_trips"]
    assert rt["met"] is False and rt["measured"]["worst_above_minimum"] == 1
    assert rt["measured"]["not_below_awsiotsdk"] == ["combined/json/native/nb-iot"]
    assert rt["measured"]["not_below_sample"] == []
    assert g["p7_nbiot_time"]["measured"] == 0.9 and g["p7_nbiot_time"]["met"] is False
    assert {r["client"] for r in s["p7_network"]["rows"]} == {"nrfprov", "sample", "awsiotsdk"}
    assert s["p7_network"]["minimum"]["combined"]["total"] == 10
    text = md.read_text()
    assert "test cpu" in text and "| combined | json | native | 2.0 |" in text
    assert "| nb-iot | combined | json | native | nrfprov | 18.0 | 0.0 | 11 | 10 |" in text
    assert "RFC 5246" in text  # the protocol minimum's derivation is in the results


def test_stand_in_process_answers_a_request_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """The benchmarks' stand-in (`nrfprov cloud up` in a child process): it provisions one device over the
    host transport, the registry-derived counts see exactly that, SIGINT stops it, and no process survives."""
    from provisioning_runs import host_flow
    from standin_process import StandInProcess

    from nrfprov.cloud.broker import running_broker_pid

    state = tmp_path / "cloud"
    zero = {"split": 0, "create": 0, "create-from-csr": 0, "register": 0}
    with StandInProcess(state) as cloud:
        child, broker = cloud.pid, running_broker_pid(state)
        assert child is not None and broker is not None and broker != child
        assert cloud.request_counts() == zero
        ca, cert, key = (p.read_text() for p in (cloud.ca_path, cloud.claim_cert_path, cloud.claim_key_path))
        run = host_flow(cloud.host, cloud.port, server_name=cloud.server_name, ca_pem=ca, claim_cert_pem=cert,
                        claim_key_pem=key)
        assert run.thing_name
        assert cloud.request_counts() == {**zero, "create": 1, "register": 1}
        certs = cloud.write_certs_folder(tmp_path / "certs")
        assert (certs / "private-key.pem").read_text() == key
        assert (certs / "private-key.pem").stat().st_mode & 0o777 == 0o600
        assert (certs / "ca-cert.pem").read_text() == ca
        assert (certs / "client-cert.pem").read_text() == cert
    assert cloud.exit_code == 0  # stopped by SIGINT, like Ctrl-C, without escalation
    assert not Path(f"/proc/{child}").exists()  # waited for, so not even a zombie
    assert running_broker_pid(state) is None
    assert not (state / "endpoint.json").exists()


def test_round_trips_are_counted_from_what_crossed_the_radio() -> None:
    """airtime.count on a hand-made claim connection (RTT 0.2 s): TLS flights and MQTT exchanges count one
    each; the second half of a reply that arrives right after the device's PUBACK is no new round trip; the
    server's close_notify after the DISCONNECT is not waited for."""
    from airtime import count

    from nrfprov.sim.network import AirEvent

    def e(t: float, kind: str, n: int = 0, conn: int = 1) -> AirEvent:
        return AirEvent(t, conn, kind, n)  # type: ignore[arg-type]

    events = [
        e(0.0, "dns", conn=0), e(0.2, "connect"),
        e(0.4, "up", 160), e(0.6, "down", 1260),  # ClientHello → ServerHello … ServerHelloDone
        e(0.61, "up", 1130), e(0.8, "down", 51),  # client flight → CCS, Finished
        e(0.81, "up", 50), e(0.83, "up", 110), e(1.0, "down", 33), e(1.0, "down", 35),  # CONNECT + SUBSCRIBE
        e(1.01, "up", 60), e(1.2, "down", 1800),  # request → PUBACK + key
        e(1.22, "up", 20), e(1.23, "down", 1000),  # PUBACK for the key; the cert was already on its way
        e(1.3, "up", 60), e(1.5, "down", 31), e(1.55, "close"),  # DISCONNECT; the server's close_notify
    ]
    air = count(events, rtt=0.2)
    assert (air.dns, air.tcp, air.exchanges, air.round_trips) == (1, 1, 4, 6)
    assert air.waited_until == 1.2
    assert (air.up_bytes, air.down_bytes, air.connections) == (1590, 4210, 1)
    with pytest.raises(ValueError):
        count(events, rtt=0)


def test_shaped_relay_puts_the_radio_between_client_and_server(plain_server: _Server) -> None:
    """Delay both ways, the TCP handshake and one DNS lookup per run, all seen at the client's end."""
    from airtime import count
    from shaped_relay import ShapedRelay

    from nrfprov.sim.network import NetworkProfile

    rtt = 0.1
    with ShapedRelay(LOOPBACK, plain_server.port, NetworkProfile("t", rtt_s=rtt), dns_per_run=True) as relay:
        t0 = time.monotonic()
        with socket.create_connection((LOOPBACK, relay.port), timeout=TIMEOUT) as c:
            for msg in (b"a", b"b"):
                c.sendall(msg)
                got = b""
                while len(got) < 777:
                    got += c.recv(4096)
        elapsed = time.monotonic() - t0
        assert relay.wait_idle(TIMEOUT)
        air = count(relay.air_events(), rtt)
    # DNS, SYN/SYN-ACK, then two request/answer exchanges: at least four RTTs.
    assert elapsed >= 4 * rtt
    assert (air.dns, air.tcp, air.exchanges) == (1, 1, 1)  # the last answer is not followed by a send
    assert (air.up_bytes, air.down_bytes) == (2, 2 * 777)
