"""A scripted MQTT peer for unit tests: reads real packets from a socket and writes hand-built replies.

This is a byte-level peer (like a broker that only knows a few answers), so the session and paho
behaviour is exercised over a real socket; see tests/integration/transport for mosquitto.
"""

from __future__ import annotations

import socket

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGREQ, DISCONNECT = 1, 2, 3, 4, 8, 9, 12, 14


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(ptype: int, body: bytes, flags: int = 0) -> bytes:
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("peer closed")
        buf += chunk
    return bytes(buf)


def read_packet(sock: socket.socket) -> tuple[int, int, bytes]:
    first = read_exact(sock, 1)[0]
    mult, length = 1, 0
    while True:
        b = read_exact(sock, 1)[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return first >> 4, first & 0x0F, read_exact(sock, length)


def mqtt_str(s: str) -> bytes:
    return len(s.encode()).to_bytes(2, "big") + s.encode()


def publish(topic: str, payload: bytes, *, v5: bool = False) -> bytes:
    body = mqtt_str(topic) + (b"\x00" if v5 else b"") + payload  # QoS 0: no packet id
    return packet(PUBLISH, body)


class ScriptedBroker:
    """Answers CONNECT/SUBSCRIBE/PUBLISH(QoS 1) on one socket with configurable codes, in a thread.

    ``on_publish(topic, payload)`` may return packets to send back (e.g. a reply message).
    ``hold_connack_until`` (a packet type) keeps the CONNACK back until such a packet has arrived, and
    ``hold_suback_until`` the SUBACK: a client that waits for the acknowledgement before sending it
    then waits forever (how the tests prove that a packet left before an acknowledgement).
    """

    def __init__(self, sock: socket.socket, *, v5: bool = False, connack_rc: int = 0,
                 suback_codes: dict[str, int] | None = None, puback_reason: int = 0,
                 on_publish: object = None, hold_connack_until: int | None = None,
                 hold_suback_until: int | None = None, close_after_connect: bool = False) -> None:
        import threading

        self.hold = {CONNACK: hold_connack_until, SUBACK: hold_suback_until}
        self.held: dict[int, bytes] = {}
        self.close_after_connect = close_after_connect
        self.sock = sock
        self.v5 = v5
        self.connack_rc = connack_rc
        self.suback_codes = suback_codes or {}
        self.puback_reason = puback_reason
        self.on_publish = on_publish
        self.received: list[tuple[int, bytes]] = []
        self.pinged = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _send(self, ptype: int, pkt: bytes) -> None:
        if self.hold.get(ptype) is not None:
            self.held[ptype] = pkt
            return
        self.sock.sendall(pkt)

    def _release(self, arrived: int) -> None:
        for ptype, until in list(self.hold.items()):
            if until == arrived:
                self.hold[ptype] = None
                if ptype in self.held:
                    self.sock.sendall(self.held.pop(ptype))

    def _run(self) -> None:
        try:
            while True:
                ptype, flags, body = read_packet(self.sock)
                self.received.append((ptype, body))
                if ptype == CONNECT and self.close_after_connect:  # a broker that hangs up on the CONNECT
                    self.sock.shutdown(socket.SHUT_RDWR)
                    return
                self._release(ptype)
                if ptype == CONNECT:
                    self._send(CONNACK, packet(CONNACK, bytes([0, self.connack_rc]) + (b"\x00" if self.v5 else b"")))
                elif ptype == SUBSCRIBE:
                    mid = body[:2]
                    rest = body[2:]
                    if self.v5:
                        rest = rest[1:]  # properties length 0
                    codes = bytearray()
                    while rest:
                        n = int.from_bytes(rest[:2], "big")
                        topic = rest[2 : 2 + n].decode()
                        codes.append(self.suback_codes.get(topic, rest[2 + n] & 3))
                        rest = rest[3 + n :]
                    self._send(SUBACK, packet(SUBACK, mid + (b"\x00" if self.v5 else b"") + bytes(codes)))
                elif ptype == PUBLISH:
                    qos = (flags >> 1) & 3
                    n = int.from_bytes(body[:2], "big")
                    topic = body[2 : 2 + n].decode()
                    rest = body[2 + n :]
                    mid = b""
                    if qos:
                        mid, rest = rest[:2], rest[2:]
                    if self.v5:
                        rest = rest[1 + rest[0] :]
                    if qos:
                        reason = bytes([self.puback_reason, 0]) if self.v5 else b""
                        self.sock.sendall(packet(PUBACK, mid + reason))
                    if callable(self.on_publish):
                        for pkt in self.on_publish(topic, rest) or ():
                            self.sock.sendall(pkt)
                elif ptype == PINGREQ:
                    self.pinged.set()
                    self.sock.sendall(packet(13, b""))
                elif ptype == DISCONNECT:
                    return
        except (EOFError, OSError):
            return
