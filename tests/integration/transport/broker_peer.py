"""A plain mosquitto with mTLS for transport/MQTT tests [mosquitto.conf(5)].

The project's full stand-in is ``nrfprov.cloud.LocalAwsIot``; this smaller peer exists so the
transport room can pin broker-level behaviour (ACL denial → PUBACK 135, size limit, kill mid-message)
with a config it controls. It is a real broker process on 127.0.0.1 and is stopped by ``close()``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from unit.transport.transport_peers import Pki

MOSQUITTO = "/usr/sbin/mosquitto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    def __init__(self, tmp: Path, pki: Pki, *, acl: str | None = None, message_size_limit: int = 131072) -> None:
        self.pki = pki
        ca, crt, key = pki.write_server(tmp / "broker")
        self.ca_path = ca
        acl_path = tmp / "broker" / "acl"
        acl_path.write_text(acl or "user dev-1\ntopic readwrite test/#\ntopic read denied/#\n"
                            "user dev-2\ntopic readwrite test/#\n")
        self.log_path = tmp / "broker" / "mosquitto.log"
        for _attempt in range(5):
            self.port = _free_port()
            conf = tmp / "broker" / "mosquitto.conf"
            conf.write_text(
                f"per_listener_settings false\nallow_anonymous false\npersistence false\n"
                f"log_dest file {self.log_path}\nlog_type all\nuser {os.environ.get('USER', 'root') or 'root'}\n"
                f"set_tcp_nodelay true\nmessage_size_limit {message_size_limit}\n"
                f"acl_file {acl_path}\n"
                f"listener {self.port} 127.0.0.1\nmax_qos 1\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\n"
                f"require_certificate true\nuse_identity_as_username true\ntls_version tlsv1.2\n"
            )
            self.log_path.write_text("")
            # stdout is block-buffered when piped, so readiness is read from the log file
            # (mosquitto starts in ~15 ms, measured on this project's loopback).
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
            if wait_until(lambda: " running" in self.log() or self.proc.poll() is not None, 10):
                if self.proc.poll() is None:
                    return
            self.close()
            if "Address already in use" not in self.log():
                break
        raise RuntimeError("mosquitto did not start: " + self.log()[-2000:])

    def log(self) -> str:
        try:
            return self.log_path.read_text()
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> Mosquitto:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        threading.Event().wait(0.005)  # polling a child's log file: no event to wait on
    return False
