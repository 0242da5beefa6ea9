"""A passive TLS record scanner for the incoming ciphertext (sans-IO: bytes in, facts out).

python-mbedtls hides the record layer, but three things the bridge needs live there:
- whether the peer stopped in the middle of a record (``mid_record``): EOF there is a broken link,
  not a clean end of stream;
- the length of every handshake record (plaintext in TLS 1.2, RFC 5246 §6.2.1), checked against
  ``CONFIG_MBEDTLS_SSL_IN_CONTENT_LEN`` in device-mirror mode;
- the server's certificate and any cleartext alert during the handshake, so a failed handshake can
  be explained (which names the certificate carries, which alert the server sent). Mbed TLS discards
  the context on a handshake error (measured with python-mbedtls 2.10.1), so this is the only place left to look.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER_LEN = 5  # content type (1) + version (2) + length (2) [RFC 5246 §6.2.1]
CT_CHANGE_CIPHER_SPEC = 20
CT_ALERT = 21
CT_HANDSHAKE = 22
CT_APPLICATION_DATA = 23
HS_CERTIFICATE = 11

#: Handshake bytes kept to explain a failure. A server flight (ServerHello, Certificate with an AWS
#: chain of ~4-5 KB, ServerKeyExchange, CertificateRequest) is well under 16 KiB; the cap stops a
#: hostile peer from growing it without bound.
MAX_CAPTURE = 32 * 1024

#: TLS alert descriptions [RFC 5246 §7.2, RFC 8446 §6.2 for 116].
ALERTS: dict[int, str] = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate",
    44: "certificate_revoked", 45: "certificate_expired", 46: "certificate_unknown",
    47: "illegal_parameter", 48: "unknown_ca", 49: "access_denied", 50: "decode_error",
    51: "decrypt_error", 70: "protocol_version", 71: "insufficient_security", 80: "internal_error",
    112: "unrecognized_name", 116: "certificate_required", 120: "no_application_protocol",
}


@dataclass(frozen=True)
class RecordHeader:
    content_type: int
    length: int


class RecordScanner:
    """Follows record boundaries in one direction of a TLS stream."""

    def __init__(self) -> None:
        self._header = bytearray()
        self._remaining = 0  # body bytes still expected for the current record
        self._current: RecordHeader | None = None
        self._body = bytearray()  # body of the current cleartext record being captured
        self.records = 0
        self.max_length = 0
        self.encrypted = False  # after the peer's ChangeCipherSpec, bodies are opaque
        self.alert: int | None = None  # first cleartext fatal alert description seen
        self._handshake = bytearray()  # concatenated cleartext handshake messages (capped)

    @property
    def mid_record(self) -> bool:
        return bool(self._header) or self._remaining > 0

    def feed(self, data: bytes) -> list[RecordHeader]:
        """Consume ciphertext; return the headers of records that started in ``data``."""
        started: list[RecordHeader] = []
        view = memoryview(data)
        i = 0
        while i < len(view):
            if self._remaining == 0:
                take = min(HEADER_LEN - len(self._header), len(view) - i)
                self._header += view[i : i + take]
                i += take
                if len(self._header) < HEADER_LEN:
                    break
                hdr = RecordHeader(self._header[0], int.from_bytes(self._header[3:5], "big"))
                self._header.clear()
                self._current = hdr
                self._remaining = hdr.length
                self._body.clear()
                self.records += 1
                self.max_length = max(self.max_length, hdr.length)
                started.append(hdr)
                if hdr.length == 0:
                    self._finish()
                continue
            take = min(self._remaining, len(view) - i)
            if not self.encrypted and self._current is not None and self._current.content_type in (
                CT_HANDSHAKE, CT_ALERT
            ):
                self._body += view[i : i + take]
            self._remaining -= take
            i += take
            if self._remaining == 0:
                self._finish()
        return started

    def _finish(self) -> None:
        hdr = self._current
        if hdr is None:
            return
        if hdr.content_type == CT_CHANGE_CIPHER_SPEC:
            self.encrypted = True
        elif not self.encrypted and hdr.content_type == CT_HANDSHAKE:
            room = MAX_CAPTURE - len(self._handshake)
            self._handshake += self._body[: max(room, 0)]
        elif not self.encrypted and hdr.content_type == CT_ALERT and len(self._body) >= 2:
            if self._body[0] == 2 and self.alert is None:  # level 2 = fatal
                self.alert = self._body[1]
        self._body.clear()
        self._current = None

    def server_certificate(self) -> bytes | None:
        """DER of the first certificate in the peer's Certificate message, if it was seen."""
        buf = bytes(self._handshake)
        i = 0
        while i + 4 <= len(buf):
            msg_type = buf[i]
            length = int.from_bytes(buf[i + 1 : i + 4], "big")
            body = buf[i + 4 : i + 4 + length]
            if len(body) < length:
                return None
            if msg_type == HS_CERTIFICATE and len(body) >= 6:
                first_len = int.from_bytes(body[3:6], "big")  # after the 3-byte list length
                der = body[6 : 6 + first_len]
                return der if len(der) == first_len else None
            i += 4 + length
        return None

    def alert_name(self) -> str | None:
        if self.alert is None:
            return None
        return ALERTS.get(self.alert, f"alert {self.alert}")
