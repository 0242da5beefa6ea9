"""The modem facade against the simulated nRF91 over a real pty, in both dialects (SM and SLM).

The shared cases live in modem_cases.py; tests/hardware/test_modem_hw.py runs the same cases on a
real modem. The tests below need the simulator's fault injection or configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from integration.modem.modem_cases import *  # noqa: F403 - the shared cases, collected here
from integration.modem.modem_peers import EchoServer, Target
from nrfprov.cli import main
from nrfprov.errors import CommandError, CommandTimeout, CredentialError, ModemLinkError, ResponseTimeout
from nrfprov.modem import Modem
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration


def test_injected_cme_error_reaches_the_caller(modem: Modem, target: Target) -> None:
    target.sim.fail_command("AT%CMNG=0", cme=515, times=1)
    with pytest.raises(CredentialError) as info:
        modem.write_credential(target.scratch_tag, 0, target.pki.ca_pem if target.pki else "")
    cause = info.value.__cause__
    assert isinstance(cause, CommandError) and cause.code == 515
    assert "memory full" in str(info.value)


def test_timeout_then_late_reply_does_not_desync(modem: Modem, target: Target) -> None:
    target.sim.delay_command("AT+CGMR", 2.0, times=1)
    _, tx0, _, _ = target.sim.stats.uart_snapshot()
    with pytest.raises(CommandTimeout) as info:
        modem.at("AT+CGMR", timeout=0.2)
    # The command's own timeout ended the wait, not the reply: the modem had sent nothing yet.
    assert info.value.timeout == 0.2 and target.sim.stats.uart_snapshot()[1] == tx0
    # The late reply arrives as unsolicited lines; the next command gets its own answer.
    assert modem.at("AT+CFUN?") == ["+CFUN: 0"]
    assert modem.firmware().startswith("mfw_")


def test_link_drop_is_a_link_error(modem: Modem, target: Target) -> None:
    target.sim.drop_link_after(5)  # dies in the middle of the next reply
    with pytest.raises(ModemLinkError):  # noticed as a dead link: a timeout would be CommandTimeout
        modem.at("AT+CGSN", timeout=30.0)
    with pytest.raises(ModemLinkError):  # and every later call fails the same way
        modem.imei()


def test_slm_long_terminator_allows_binary(tmp_path: Path, echo_servers: tuple[EchoServer, EchoServer]) -> None:
    term = "Zq7#pX!k2W"
    with SimulatedModem(tmp_path / "slm2", dialect="slm", baud=0, terminator=term) as sim, Modem.open(
        sim.port_url, slm_terminator=term
    ) as m:
        m.set_cfun(1)
        m.wait_registered(5)
        m.check_raw_binary_safe()
        payload = b"+++ciphertext+++\r\nOK\r\n" * 50
        with m.open_tcp("127.0.0.1", echo_servers[0].port) as s:
            s.send(payload)
            got = b""
            while len(got) < len(payload):
                got += s.recv(4096, timeout=10)
            assert got == payload


def test_open_recovers_an_slm_left_in_data_mode(
    tmp_path: Path, echo_servers: tuple[EchoServer, EchoServer]
) -> None:
    with SimulatedModem(tmp_path / "dm", dialect="slm", baud=0) as sim:
        with Modem.open(sim.port_url) as m1:
            m1.set_cfun(1)
            m1.wait_registered(5)
            m1.open_tcp("127.0.0.1", echo_servers[0].port)
            m1.at("AT#XSEND")  # enters data mode; this host then "dies" without the terminator
        with Modem.open(sim.port_url, ready_timeout=0.3) as m2:
            assert m2.at("AT+CFUN?") == ["+CFUN: 1"]


def test_socket_url_through_a_tcp_serial_bridge(target: Target) -> None:
    # socket://host:port (a serial server such as ser2net) has no cancel_read: the reader uses a
    # read timeout instead, and close() must still stop it promptly.
    import socket

    import serial

    listener = socket.create_server(("127.0.0.1", 0))
    pty = serial.Serial(target.port_url, timeout=0.05)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def bridge() -> None:
        conn, _ = listener.accept()
        conn.settimeout(0.05)

        def up() -> None:
            while not stop.is_set():
                try:
                    data = conn.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                pty.write(data)

        t = threading.Thread(target=up)
        t.start()
        threads.append(t)
        while not stop.is_set():
            data = pty.read(4096)
            if data:
                conn.sendall(data)
        conn.close()

    b = threading.Thread(target=bridge)
    b.start()
    try:
        with Modem.open(f"socket://127.0.0.1:{listener.getsockname()[1]}") as m:
            assert m.at("AT+CFUN?") == ["+CFUN: 0"]
            assert len(m.imei()) == 15
            reader = next(t for t in threading.enumerate() if t.name == "nrfprov-at-socket://127.0.0.1:"
                          f"{listener.getsockname()[1]}")
        assert not reader.is_alive()  # close() stopped the reader (it joins it, bounded by 5 s)
    finally:
        stop.set()
        b.join(5)
        for t in threads:
            t.join(5)
        listener.close()
        pty.close()


def test_throttled_uart_counts_match(tmp_path: Path) -> None:
    # At 115200 baud the sim's byte counters and ours must agree exactly (timing is the point here).
    with SimulatedModem(tmp_path / "thr", dialect="sm", baud=115200) as sim, Modem.open(sim.port_url) as m:
        t0 = time.monotonic()
        m.imei()
        lines = m.at("AT%CMNG=1")
        elapsed = time.monotonic() - t0
        # The sim read every byte we sent before it answered the last command.
        assert sim.stats.uart_rx == m.uart_bytes_sent
        assert sim.stats.uart_tx >= m.uart_bytes_received
        # 10 bits per byte at 115200: the two exchanges cannot be faster than the wire.
        wire = (len(b"AT+CGSN\r\n") + len(b"AT%CMNG=1\r\n") + 30 + 6 + sum(len(x) + 4 for x in lines)) * 10
        assert elapsed >= wire / 115200


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_at_prints_reply_and_exit_3_on_error(target: Target, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["at", "--port", target.port_url, "AT+CGSN", "AT+CFUN?"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out[0]) == 15 and out[0].isdigit() and out[1] == "+CFUN: 0"
    assert main(["at", "--port", target.port_url, "AT+NOSUCH"]) == 3
    assert "modem answered" in capsys.readouterr().err
    assert main(["at", "--port", target.port_url, "AT#XSEND"]) == 2
    assert main(["at", "--port", target.port_url, "AT#XSEND=0,2,0,5"]) == 2
    assert main(["at", "--port", target.port_url, "AT+CGSN=1"]) == 0  # still in AT mode


def test_cli_creds_write_list_delete(target: Target, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert target.pki is not None
    port = ["--port", target.port_url]
    key_file = tmp_path / "device.key"
    from integration.modem.modem_peers import make_client_identity

    _cert, key = make_client_identity(target.pki.ca_pem)
    key_file.write_text(key)
    (tmp_path / "ca.pem").write_text(target.pki.ca_pem)
    assert main(["at", *port, "AT+CFUN=1"]) == 0
    capsys.readouterr()
    assert main(["creds", "write", *port, "7001", "key", str(key_file)]) == 0
    assert main(["creds", "write", *port, "7001", "ca", str(tmp_path / "ca.pem")]) == 0
    cap = capsys.readouterr()
    assert "SHA-256 verified" in cap.out and "CFUN=1" in cap.err
    assert "PRIVATE" not in cap.out + cap.err and key.splitlines()[1] not in cap.out + cap.err
    assert main(["creds", "list", *port, "--tag", "7001"]) == 0  # the old spelling still works
    listing = capsys.readouterr().out
    assert "CLIENT_KEY" in listing and "ROOT_CA_CERT" in listing
    # mixed-up type is refused before the modem sees it
    assert main(["creds", "write", *port, "7001", "cert", str(key_file)]) == 2
    assert main(["creds", "delete", *port, "7001", "key"]) == 0
    assert main(["creds", "delete", *port, "7001", "key"]) == 0
    assert main(["creds", "delete", *port, "7001", "key", "--strict"]) == 3
    capsys.readouterr()
    assert main(["creds", "list", *port, "7001", "--json"]) == 0  # TAG is positional now
    listed = json.loads(capsys.readouterr().out)
    assert [(e["sec_tag"], e["type_name"]) for e in listed] == [(7001, "ROOT_CA_CERT")]
    assert main(["creds", "delete", *port, "7001", "all"]) == 0
    assert main(["creds", "delete", *port, "4294967292", "all"]) == 2
    assert main(["at", *port, "AT+CFUN?", "AT%CMNG=1,7001"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "+CFUN: 1"  # restored; tag 7001 now empty


def test_commands_from_two_threads_while_a_socket_is_pumped(modem: Modem, target: Target) -> None:
    # The MQTT tunnel pumps a socket from its own thread while other code runs AT commands.
    assert target.tcp is not None
    modem.set_cfun(1)
    modem.wait_registered(5)
    received = bytearray()
    failures: list[BaseException] = []
    stop = threading.Event()
    arrived = threading.Condition()
    with modem.open_tcp(*target.tcp) as s:

        def pump() -> None:
            while not stop.is_set():
                try:
                    data = s.recv(4096, timeout=0.05)
                except ResponseTimeout:
                    continue
                except BaseException as exc:  # reported to the test below
                    with arrived:
                        failures.append(exc)
                        arrived.notify_all()
                    return
                with arrived:
                    received.extend(data)
                    arrived.notify_all()

        t = threading.Thread(target=pump)
        t.start()
        try:
            expected = b""
            for i in range(30):
                msg = b"msg %d;" % i
                s.send(msg)
                expected += msg
                assert len(modem.imei()) == 15
            with arrived:
                arrived.wait_for(lambda: bytes(received) == expected or bool(failures), timeout=10)
        finally:
            stop.set()
            t.join(5)
    assert not failures
    assert bytes(received) == expected


def test_console_script_end_to_end(target: Target, tmp_path: Path) -> None:
    out = tmp_path / "csr.der"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src")}
    run = subprocess.run(
        [sys.executable, "-m", "nrfprov", "creds", "keygen", "--port", target.port_url, "9", str(out),
         "--attributes", "CN=cli"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert run.returncode == 0, run.stderr
    from cryptography import x509

    assert x509.load_der_x509_csr(out.read_bytes()).is_signature_valid
