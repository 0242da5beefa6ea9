"""Bad local input to the real console script: a clear exit 2, never a traceback, a hang or an OOM.

Each case runs ``nrfprov`` as a subprocess with a timeout (a hang detector) and an address-space cap
(so a read that never ends fails fast instead of taking the machine's memory). Every case fails
before a port is opened: ``--port`` names a path that does not exist.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.cli.clirun import run

NO_PORT = "/nonexistent/ttyACM9"
HANG = 30  # seconds: far longer than any of these takes; only a hang reaches it


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "fifo.pem"
    os.mkfifo(path)
    yield path  # nobody ever writes to it: a blocking open() would wait forever


def _refused(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


def test_config_fragment_that_never_ends(fifo: Path) -> None:
    _refused(run("config", "show", "--conf", "/dev/zero", timeout=HANG), "/dev/zero", "character device")
    _refused(run("config", "show", "--overlay", str(fifo), timeout=HANG), str(fifo), "FIFO")


def test_config_fragment_too_large(tmp_path: Path) -> None:
    big = tmp_path / "huge.conf"
    big.write_bytes(b"# comment\n" * 200_000)  # 2 MB of comments: no prj.conf is like this
    _refused(run("config", "show", "--conf", str(big), timeout=HANG), "larger than")


def test_credential_file_that_never_ends(fifo: Path) -> None:
    _refused(run("creds", "write", "--port", NO_PORT, "43", "ca", "/dev/zero", timeout=HANG), "character device")
    _refused(run("creds", "write", "--port", NO_PORT, "43", "ca", str(fifo), timeout=HANG), "FIFO")
    with open("/dev/zero", "rb") as zero:
        _refused(run("creds", "write", "--port", NO_PORT, "43", "ca", "-", stdin=zero, timeout=HANG),
                 "standard input is longer than")


def test_certs_folder_ca_that_never_ends(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    os.mkfifo(certs / "ca-cert.pem")
    _refused(run("tls-check", "--backend", "host", "--host", "127.0.0.1", "--broker-port", "1", "--certs", str(certs),
                 "--set", "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost", timeout=HANG), "FIFO")


@pytest.mark.parametrize("argv", [
    ["at", "--port", NO_PORT, "--baud", "5000000000", "AT"],
    ["at", "--port", NO_PORT, "--baud", "0", "AT"],
    ["at", "--port", NO_PORT, "--timeout", "nan", "AT"],
    ["at", "--port", NO_PORT, "--timeout", "-1", "AT"],
    ["at", "--port", NO_PORT, "--timeout", "inf", "AT"],
    ["creds", "list", "--port", NO_PORT, "99999999999"],
    ["creds", "write", "--port", NO_PORT, "2147483648", "ca", "x.pem"],
    ["creds", "keygen", "--port", NO_PORT, "-5", "out.der"],
    ["tls-check", "--backend", "host", "--broker-port", "70000"],
    ["tls-check", "--backend", "host", "--timeout", "1e400"],
    ["sim", "--baud", "5000000000"],
    ["sim", "--count", "0"],
    ["sim", "--attach-s", "nan"],
    ["sim", "--delay", "AT+CFUN=inf"],
    ["cloud", "up", "--broker-port", "99999"],
    ["demo", "--baud", "-1"],
    ["aws", "reprovision", "thing", "--hours", "0"],
], ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_numeric_flags_out_of_range(argv: list[str]) -> None:
    proc = run(*argv, timeout=HANG)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert "must be " in proc.stderr, proc.stderr  # the range is named, not just "invalid"


def test_a_baud_rate_that_overflows_on_a_real_port() -> None:
    import pty

    master, slave = pty.openpty()
    try:  # the port exists, so only the range check stands between the value and the tty driver
        proc = run("at", "--port", os.ttyname(slave), "--baud", "5000000000", "AT", timeout=HANG)
    finally:
        os.close(master)
        os.close(slave)
    _refused(proc, "must be 1..4000000")
