"""Where data-mode bytes for one socket go: SM counted mode sends at the end; SLM buffers like slm_at_host."""

from __future__ import annotations

import logging

from nrfprov.sim.netsock import SimSocket, SocketFailure
from nrfprov.sim.replies import DataSink

log = logging.getLogger(__name__)

SLM_DATAMODE_BUF = 4096  # CONFIG_SLM_DATAMODE_BUF_SIZE default: a full buffer is sent at once


class SendSink(DataSink):
    """Data-mode bytes for one socket. SM counted mode sends at the end; SLM buffers like slm_at_host."""

    def __init__(self, sock: SimSocket, *, counted: bool) -> None:
        self.sock = sock
        self.counted = counted
        self.buf = bytearray()
        self.status = 0

    def data(self, payload: bytes) -> None:
        self.buf += payload
        if not self.counted and len(self.buf) >= SLM_DATAMODE_BUF:
            self._send()

    def idle(self) -> None:
        if not self.counted:
            self._send()

    def _send(self) -> None:
        data, self.buf = bytes(self.buf), bytearray()
        if not data:
            return
        try:
            self.sock.send(data)
        except SocketFailure as exc:
            if self.counted:
                self.status = -exc.errno
            else:
                # SLM logs a failed send, drops the bytes and stays in data mode; exit status stays 0.
                log.info("sim: data-mode send failed (%s), %d bytes dropped", exc, len(data))

    def end(self) -> int:
        self._send()
        return self.status
