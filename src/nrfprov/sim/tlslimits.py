"""The nRF91's two limits on received TLS, applied to the raw server→modem byte stream.

* received TLS data: an application-data record whose length field exceeds 2303 bytes (2048 B
  plaintext + max overhead) fails the socket with EMSGSIZE and the data is lost [sdk-nrf PR #20182
  known issue; mfw 1.2.0 release notes "2kB secure socket buffer"]. Handshake records are not held
  to it: no source says they are, and servers send their whole Certificate message in one record;
* the handshake: "Maximum server certificate chain size has a limit of 4kB" (modem release notes,
  as quoted by Nordic on DevZone, thread 114031; a 5,279-byte chain broke the connection). We count
  the chain as the sum of the DER certificates in the server's Certificate message, as sent (the
  3-byte length prefixes and record headers not counted), and fail the handshake when it exceeds 4096.
"""

from __future__ import annotations

# Largest incoming TLS data record length field the modem accepts [sdk-nrf PR #20182; mirrored by the client].
TLS_RECORD_LIMIT = 2303
# Largest server certificate chain (sum of DER certificates) the modem's handshake accepts: "4kB"
# (modem release notes as quoted on DevZone 114031); we read 4 kB as 4096 bytes.
SERVER_CHAIN_LIMIT = 4096
# A plaintext handshake message larger than this is refused (our bound: TLS 1.2 allows 2^24 - 1).
_HANDSHAKE_MESSAGE_MAX = 65536


_CT_CHANGE_CIPHER_SPEC, _CT_HANDSHAKE, _CT_APPLICATION_DATA = 20, 22, 23
_HS_CERTIFICATE = 11


class RecordTooLarge(Exception):
    def __init__(self, length: int) -> None:
        super().__init__(f"incoming TLS record of {length} bytes exceeds {TLS_RECORD_LIMIT}")
        self.length = length


class ChainTooLarge(Exception):
    def __init__(self, size: int, count: int) -> None:
        super().__init__(
            f"server certificate chain of {size} bytes ({count} certificates) exceeds the modem's "
            f"{SERVER_CHAIN_LIMIT}-byte limit"
        )
        self.size = size
        self.count = count


class RecordScanner:
    """Follows TLS record boundaries in a raw server→modem byte stream.

    Application-data records are checked against ``limit``; the plaintext handshake (until the
    server's ChangeCipherSpec) is reassembled to measure the server's certificate chain.
    """

    def __init__(self, limit: int = TLS_RECORD_LIMIT, chain_limit: int = SERVER_CHAIN_LIMIT) -> None:
        self.limit = limit
        self.chain_limit = chain_limit
        self._header = bytearray()
        self._remaining = 0
        self._type = 0
        self._encrypted = False  # after the server's ChangeCipherSpec
        self._hs = bytearray()  # plaintext handshake bytes not yet parsed into messages
        self.records: list[int] = []  # length fields seen, for tests and logs (bounded below)
        self.chain_sizes: list[int] = []  # DER size of each certificate the server sent

    @property
    def chain_size(self) -> int:
        return sum(self.chain_sizes)

    def feed(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            if self._remaining:
                take = min(self._remaining, len(data) - i)
                if self._type == _CT_HANDSHAKE and not self._encrypted:
                    self._handshake_bytes(data[i : i + take])
                self._remaining -= take
                i += take
                continue
            need = 5 - len(self._header)
            self._header += data[i : i + need]
            i += min(need, len(data) - i)
            if len(self._header) == 5:
                self._type = self._header[0]
                length = int.from_bytes(self._header[3:5], "big")
                self._header.clear()
                if len(self.records) < 1024:
                    self.records.append(length)
                if self._type == _CT_CHANGE_CIPHER_SPEC:
                    self._encrypted = True
                if self._type == _CT_APPLICATION_DATA and length > self.limit:
                    raise RecordTooLarge(length)
                self._remaining = length

    def _handshake_bytes(self, chunk: bytes) -> None:
        self._hs += chunk
        while len(self._hs) >= 4:
            length = int.from_bytes(self._hs[1:4], "big")
            if length > _HANDSHAKE_MESSAGE_MAX:
                raise ChainTooLarge(length, 0)
            if len(self._hs) < 4 + length:
                return
            msg_type, body = self._hs[0], bytes(self._hs[4 : 4 + length])
            del self._hs[: 4 + length]
            if msg_type == _HS_CERTIFICATE:
                self._certificates(body)

    def _certificates(self, body: bytes) -> None:
        # Certificate: certificate_list<0..2^24-1>, each ASN.1Cert<1..2^24-1> (RFC 5246 §7.4.2)
        total = int.from_bytes(body[0:3], "big")
        pos, end = 3, min(3 + total, len(body))
        sizes = []
        while pos + 3 <= end:
            n = int.from_bytes(body[pos : pos + 3], "big")
            sizes.append(n)
            pos += 3 + n
        self.chain_sizes = sizes
        if sum(sizes) > self.chain_limit:
            raise ChainTooLarge(sum(sizes), len(sizes))
