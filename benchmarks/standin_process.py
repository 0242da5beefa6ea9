"""The local AWS IoT stand-in in its own process, started the way a user starts it: ``nrfprov cloud up``.

Why a process of its own: the stand-in's responder generates an RSA-2048 device key per request (its
KeyPool refills right after each take, in a background thread) and writes its registry and policy; real
AWS IoT does that work on other machines, so none of it should run in the process being timed.
(cryptography 50 releases the GIL during RSA key generation, so the measured P1 change was within noise:
benchmarks/notes.md, finding 4.)

``StandInProcess`` exposes what the suites use of ``LocalAwsIot``: host, port, server_name, ca_path,
claim_cert_path, claim_key_path, write_certs_folder(dir) and request_counts(). The counts are derived
from the registry the stand-in persists in its state directory (see ``request_counts``).
"""

from __future__ import annotations

import json
import os
import select
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

# AWS IoT sends no TLS session tickets ("AWS IoT does not support the SessionTicket TLS extension"
# [AWS IoT developer guide, transport-security]); mosquitto has no switch for them, but OpenSSL 3 applies
# the "system_default" section of the file OPENSSL_CONF names to every SSL_CTX it creates
# [OpenSSL config(5), SSL_CONF_cmd(3): Options -SessionTicket for TLS 1.2, NumTickets 0 for TLS 1.3].
# The stand-in process and the mosquitto it starts get this file, so no client in a benchmark pays for
# tickets AWS would not send (the relay still counts any that appear).
NO_TICKETS_CONF = """\
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
Options = -SessionTicket
NumTickets = 0
"""
START_TIMEOUT_S = 30.0  # CA creation + first RSA key + mosquitto start, on a busy 2-core machine
STOP_TIMEOUT_S = 10.0  # per escalation step: SIGINT, then SIGTERM, then SIGKILL
# The ready line is one JSON object of a host, a port and five paths; 64 KiB is far above it.
MAX_READY_LINE = 64 * 1024


class StandInError(RuntimeError):
    """The stand-in process did not start (or stop) as expected; the message names its log file."""


class StandInProcess:
    """``python -m nrfprov cloud up --state DIR --json`` as a child process, stopped with SIGINT."""

    host = "127.0.0.1"
    server_name = "localhost"

    def __init__(self, state_dir: Path, *, device_key: str = "rsa") -> None:
        self.state_dir = Path(state_dir).resolve()
        self.device_key = device_key
        self.log_path = self.state_dir / "up.log"  # the child's stderr (its log lines, tracebacks)
        self._proc: subprocess.Popen[bytes] | None = None
        self._info: dict[str, Any] | None = None
        self.exit_code: int | None = None  # of the last stop(): 0 when SIGINT stopped it cleanly
        self._broker_pid: int | None = None  # the mosquitto our child started (read once it is ready)

    # --- what the suites read ------------------------------------------------------------------------

    def _get(self, key: str) -> Any:
        if self._info is None:
            raise StandInError("the stand-in process is not running; use it as a context manager")
        return self._info[key]

    @property
    def port(self) -> int:
        return int(self._get("port"))

    @property
    def ca_path(self) -> Path:
        return Path(self._get("ca"))

    @property
    def claim_cert_path(self) -> Path:
        return Path(self._get("claim_cert"))

    @property
    def claim_key_path(self) -> Path:
        return Path(self._get("claim_key"))

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def write_certs_folder(self, directory: Path) -> Path:
        """Nordic's aws_iot_provisioning sample's ``certs/`` layout for native TLS, holding the claim credentials
        (key 0600)."""
        from nrfprov.cloud.pki import write_private

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.ca_path, directory / "ca-cert.pem")
        shutil.copyfile(self.claim_cert_path, directory / "client-cert.pem")
        write_private(directory / "private-key.pem", self.claim_key_path.read_bytes())
        return directory

    def request_counts(self) -> dict[str, int]:
        """Accepted requests per operation, derived from the persisted registry (``registry.json``).

        split / create / create-from-csr: one certificate record per accepted request, by its
        ``operation``. register: one ownership token marked used per accepted RegisterThing.
        Rejected requests leave nothing in the registry, so unlike ``LocalAwsIot.request_counts``
        (which counts every request received) these count accepted requests only.
        """
        from nrfprov.cloud.registry import Registry

        counts = {"split": 0, "create": 0, "create-from-csr": 0, "register": 0}
        registry = Registry(self.state_dir)
        data = registry.snapshot()  # one consistent read under the registry's shared lock
        for entry in data["certificates"].values():
            if entry.get("deleted"):  # rolled back by the split handler: not an accepted request
                continue
            op = Registry.record(entry).operation
            if op in counts:
                counts[op] += 1
        counts["register"] = sum(1 for t in data["tokens"].values() if t.get("used"))
        return counts

    # --- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> StandInProcess:
        if self._proc is not None:
            raise StandInError("this stand-in process is already started")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "nrfprov", "cloud", "up", "--state", str(self.state_dir),
               "--device-key", self.device_key, "--json"]
        conf = self.state_dir / "openssl-no-tickets.cnf"
        conf.write_text(NO_TICKETS_CONF)
        env = {**os.environ, "OPENSSL_CONF": str(conf)}
        with open(self.log_path, "wb") as log:
            # A session of its own: a Ctrl-C meant for pytest does not reach it; we stop it ourselves.
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                          bufsize=0, start_new_session=True, env=env)
        try:
            line = self._read_ready_line()
            self._info = json.loads(line)
            endpoint = json.loads(Path(self._info["endpoint"]).read_text())
            if int(endpoint["port"]) != int(self._info["port"]):
                raise StandInError(f"endpoint.json port {endpoint['port']} differs from the ready line")
            from nrfprov.cloud.broker import running_broker_pid

            self._broker_pid = running_broker_pid(self.state_dir)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_ready_line(self) -> bytes:
        """`cloud up --json` prints one line once the broker and responder are up (after endpoint.json)."""
        assert self._proc is not None and self._proc.stdout is not None
        buf = b""
        deadline = time.monotonic() + START_TIMEOUT_S
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            while b"\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StandInError(f"the stand-in printed no ready line in {START_TIMEOUT_S:.0f} s; "
                                       f"see {self.log_path}")
                if not sel.select(left):
                    continue
                chunk = os.read(self._proc.stdout.fileno(), 4096)
                if not chunk:
                    code = self._proc.wait(timeout=STOP_TIMEOUT_S)
                    raise StandInError(f"the stand-in exited with code {code} before it was ready; "
                                       f"see {self.log_path}")
                buf += chunk
                if len(buf) > MAX_READY_LINE:
                    raise StandInError(f"the stand-in's ready line exceeds {MAX_READY_LINE} bytes")
        return buf.split(b"\n", 1)[0]

    def stop(self) -> None:
        """SIGINT (what Ctrl-C sends), then SIGTERM, then SIGKILL, each with a timeout; then the broker."""
        proc, self._proc, self._info = self._proc, None, None
        if proc is None:
            return
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
                if proc.poll() is not None:
                    break
                try:
                    # The whole group: it is the session we created for the child (the broker has its own).
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    continue
            self.exit_code = proc.wait(timeout=STOP_TIMEOUT_S)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
            self._stop_orphan_broker()

    def _stop_orphan_broker(self) -> None:
        # The stand-in stops mosquitto on exit, and PR_SET_PDEATHSIG ends it if its owner dies; this is
        # the last fallback so that nothing of ours survives the session whatever happened above.
        # Only the broker our own child started: another stand-in on the same directory is not ours.
        from nrfprov.cloud.broker import running_broker_pid

        pid, self._broker_pid = self._broker_pid, None
        if pid is None or running_broker_pid(self.state_dir) != pid:
            return
        try:
            pidfd = os.pidfd_open(pid)  # not our child, so no wait(): a pidfd turns readable when it exits
        except ProcessLookupError:
            return
        try:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                signal.pidfd_send_signal(pidfd, sig)
                if select.select([pidfd], [], [], STOP_TIMEOUT_S)[0]:
                    return
        except ProcessLookupError:
            return
        finally:
            os.close(pidfd)
        raise StandInError(f"mosquitto pid {pid} of {self.state_dir} survived SIGKILL")

    def __enter__(self) -> StandInProcess:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
