"""Native TLS bridge: python-mbedtls ``TLSWrappedBuffer`` over any ``ByteStream``.

This mirrors Nordic's aws_iot_provisioning sample's ``overlay-native_tls.conf``: TLS 1.2 terminated by Mbed TLS on
the host, so the modem only carries TCP and its ~2 KB secure-socket receive limit no longer applies
[sdk-nrf PR #20182; Nordic's aws_iot_provisioning sample, overlay-native_tls.conf]. The loop avoids every
python-mbedtls trap we reproduced on this project's loopback [python-mbedtls tls.py, _tls.pyx]:

- receive with ``readinto()`` (``read()`` drops plaintext), one record at a time;
- python-mbedtls ring buffers are 32 KiB: feed at most 16 KiB of ciphertext per call and write at
  most 16 KiB of plaintext per call, draining the outgoing ring after every write;
- the peer's close_notify surfaces as ``TLSError`` 0x7880, ``RaggedEOF`` as its own class: both EOF;
- ``do_handshake()`` is one step; completion is only visible in ``_handshake_state``. *Want write* is
  ignored while stepping, so a whole flight leaves in one transport write (2 writes per handshake,
  which matters at modem round trips and avoids Nagle stalls);
- no max-fragment-length (MFL < 2048 breaks handshakes with Mbed TLS 2.28 [Mbed-TLS/mbedtls issues #1840, #9269]);
- an IP address as server name always fails verification (Mbed TLS 2.28 matches DNS names
  only; measured on this project's loopback): refused up front.

Not thread-safe (python-mbedtls objects need one owner thread): one thread owns a ``NativeTlsStream``
and its inner stream.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Sequence

from mbedtls.exceptions import TLSError as MbedTLSError
from mbedtls.tls import (
    ClientContext,
    HandshakeStep,
    RaggedEOF,
    TLSConfiguration,
    TLSVersion,
    WantReadError,
    WantWriteError,
)

from nrfprov.config import default_symbol
from nrfprov.errors import (
    CertificateVerifyError,
    DeviceLimitError,
    LinkClosed,
    ResponseTimeout,
    TlsError,
    TransportError,
    UsageError,
)
from nrfprov.transport.base import ByteStream, select_fd, wake_stream
from nrfprov.transport.credentials import TlsCredentials
from nrfprov.transport.tls_records import CT_HANDSHAKE, RecordScanner
from nrfprov.transport.tls_verify import explain_verify_failure

log = logging.getLogger(__name__)

#: Max plaintext per TLS record [RFC 5246 §6.2.1; MBEDTLS_SSL_IN_CONTENT_LEN default 16384].
MAX_RECORD_PLAINTEXT = 16384
#: Per-call ciphertext feed / plaintext write: python-mbedtls rings are 32 KiB [python-mbedtls _tls.pyx].
MAX_FEED = 16384
MAX_WRITE = 16384
#: Drain chunk for the outgoing ring (its whole size).
RING_SIZE = 32 * 1024

#: ALPN protocol AWS IoT requires for MQTT + X.509 on port 443 [AWS IoT developer guide, protocols].
AWS_MQTT_ALPN = "x-amzn-mqtt-ca"

#: The suites the NCS native-TLS overlay enables (ECDHE-RSA / ECDHE-ECDSA, AES-GCM/CCM/CBC, SHA-256/384)
#: [Nordic's aws_iot_provisioning sample, overlay-native_tls.conf]. CCM exists for ECDSA only (RFC 7251).
#: Order: AEAD first, strongest first.
NATIVE_TLS_CIPHERS: tuple[str, ...] = (
    "TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384",
    "TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384",
    "TLS-ECDHE-ECDSA-WITH-AES-128-GCM-SHA256",
    "TLS-ECDHE-RSA-WITH-AES-128-GCM-SHA256",
    "TLS-ECDHE-ECDSA-WITH-AES-256-CCM",
    "TLS-ECDHE-ECDSA-WITH-AES-128-CCM",
    "TLS-ECDHE-ECDSA-WITH-AES-256-CBC-SHA384",
    "TLS-ECDHE-RSA-WITH-AES-256-CBC-SHA384",
    "TLS-ECDHE-ECDSA-WITH-AES-128-CBC-SHA256",
    "TLS-ECDHE-RSA-WITH-AES-128-CBC-SHA256",
)

# Mbed TLS 2.28 error codes (positive, as python-mbedtls reports them).
ERR_X509_CERT_VERIFY_FAILED = 0x2700
ERR_SSL_FATAL_ALERT_MESSAGE = 0x7780
ERR_SSL_PEER_CLOSE_NOTIFY = 0x7880
ERR_SSL_CONN_EOF = 0x7280


def alpn_for_port(port: int) -> tuple[str, ...]:
    """AWS IoT needs ALPN only on 443 (8883 is plain MQTT over TLS) [AWS IoT developer guide, protocols]."""
    return (AWS_MQTT_ALPN,) if port == 443 else ()


class NativeTlsStream:
    """A TLS 1.2 client session over ``inner``; itself a ``ByteStream`` (plaintext counters).

    ``in_content_limit`` (device-mirror mode) fails any incoming record whose plaintext exceeds the
    device's ``CONFIG_MBEDTLS_SSL_IN_CONTENT_LEN`` with ``DeviceLimitError``, the way the device would.
    ``out_content_len`` slices outgoing plaintext into records no larger than the device would send.
    """

    def __init__(
        self,
        inner: ByteStream,
        credentials: TlsCredentials,
        server_name: str,
        *,
        port: int = 8883,
        alpn: Sequence[str] | None = None,
        in_content_limit: int | None = None,
        in_content_symbol: str = default_symbol("mbedtls_in_content_len"),
        out_content_len: int = MAX_WRITE,
    ) -> None:
        if not server_name:
            raise UsageError("the TLS server name is empty", hint="set CONFIG_AWS_IOT_BROKER_HOST_NAME")
        if _is_ip(server_name):
            raise UsageError(
                f"TLS server name {server_name!r} is an IP address; Mbed TLS 2.28 checks DNS names only",
                hint="pass the broker's DNS name (for the local stand-in: 'localhost')",
            )
        self.inner = inner
        self.server_name = server_name
        self.credentials = credentials
        self.alpn = tuple(alpn) if alpn is not None else alpn_for_port(port)
        self._in_limit = in_content_limit
        self._in_symbol = in_content_symbol
        self._out_slice = max(1, min(out_content_len, MAX_WRITE))
        chain = credentials.certificate_chain()
        conf = TLSConfiguration(
            validate_certificates=True,
            certificate_chain=chain,
            ciphers=NATIVE_TLS_CIPHERS,
            inner_protocols=tuple(p.encode() for p in self.alpn) or None,
            lowest_supported_version=TLSVersion.TLSv1_2,
            highest_supported_version=TLSVersion.TLSv1_2,
            trust_store=credentials.trust_store(),
        )
        self._tls = ClientContext(conf).wrap_buffers(server_name)
        self._scanner = RecordScanner()
        self._plain = bytearray()  # decrypted, not yet returned; ≤ one record (16 KiB)
        self._rbuf = bytearray(MAX_RECORD_PLAINTEXT)
        self._sent = 0
        self._received = 0
        self._handshake_done = False
        self._eof = False
        self._closed = False
        self._failed: TransportError | None = None
        self.handshake_bytes: tuple[int, int] = (0, 0)  # (up, down) ciphertext incl. TCP payload only
        self.handshake_writes = 0
        self.handshake_seconds = 0.0
        self.cipher: str | None = None
        self.negotiated_alpn: str | None = None

    # -- ByteStream ------------------------------------------------------------------------------

    @property
    def bytes_sent(self) -> int:
        return self._sent

    @property
    def bytes_received(self) -> int:
        return self._received

    def wake(self) -> None:
        """Any thread: a ``recv`` waiting on the inner stream returns early (``transport.base``)."""
        wake_stream(self.inner)

    def select_fileno(self) -> int:
        fd = select_fd(self.inner)
        if fd is None:
            raise AttributeError("the inner stream cannot be selected on")
        return fd

    @classmethod
    def open(cls, inner: ByteStream, credentials: TlsCredentials, server_name: str, *,
             timeout: float = 30.0, **kw: object) -> NativeTlsStream:
        """Construct and run the handshake; close ``inner`` if that fails."""
        try:
            stream = cls(inner, credentials, server_name, **kw)  # type: ignore[arg-type]
            stream.handshake(timeout)
        except BaseException:
            inner.close()
            raise
        return stream

    def handshake(self, timeout: float | None = 30.0) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        up0, down0 = self.inner.bytes_sent, self.inner.bytes_received
        t0 = time.monotonic()
        while self._tls._handshake_state is not HandshakeStep.HANDSHAKE_OVER:
            try:
                self._tls.do_handshake()
            except WantReadError:
                self._drain(handshake=True)
                data = self._handshake_recv(deadline, timeout)
                if not data:
                    raise self._handshake_eof() from None
                self._feed(data)
            except WantWriteError:
                pass  # already queued; keeping it lets the whole flight leave in one write
            except MbedTLSError as exc:
                raise self._handshake_error(exc) from exc
        self._drain(handshake=True)
        self._handshake_done = True
        self.handshake_seconds = time.monotonic() - t0
        self.handshake_bytes = (self.inner.bytes_sent - up0, self.inner.bytes_received - down0)
        self.cipher = _text(self._tls.cipher())
        self.negotiated_alpn = _text(self._tls.negotiated_protocol()) or None
        if self.alpn and self.negotiated_alpn not in self.alpn:
            log.warning("server did not confirm ALPN %s (got %r)", self.alpn, self.negotiated_alpn)
        log.debug("TLS up with %s: %s, %d B up / %d B down, %d writes", self.server_name, self.cipher,
                  *self.handshake_bytes, self.handshake_writes)

    def send(self, data: bytes) -> None:
        self._check_usable()
        view = memoryview(data)
        for i in range(0, len(view), self._out_slice):
            try:
                self._tls.write(bytes(view[i : i + self._out_slice]))
            except MbedTLSError as exc:
                raise self._fail(TlsError(f"TLS write failed: {exc}", err=_code(exc))) from exc
            self._drain()
            self._sent += min(self._out_slice, len(view) - i)

    def recv(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if self._plain:
            return self._take(max_bytes)
        self._check_usable(reading=True)
        if self._eof:
            return b""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                n = self._tls.readinto(self._rbuf, len(self._rbuf))  # type: ignore[arg-type]  # stub says bytes
            except WantReadError:
                self._drain()
                data = self._inner_recv(deadline, "TLS data")
                if not data:
                    if self._scanner.mid_record:
                        raise self._fail(LinkClosed(
                            f"{self.server_name} closed the connection in the middle of a TLS record"
                        )) from None
                    self._eof = True  # TCP FIN without close_notify at a record boundary
                    return b""
                self._feed(data)
                continue
            except RaggedEOF:
                self._eof = True
                return b""
            except MbedTLSError as exc:
                if _code(exc) == ERR_SSL_PEER_CLOSE_NOTIFY:
                    self._eof = True
                    return b""
                raise self._fail(TlsError(f"TLS receive failed: {exc}", err=_code(exc))) from exc
            if n <= 0:
                continue  # an empty record (allowed by RFC 5246 §6.2.1): nothing to hand up
            if self._in_limit is not None and n > self._in_limit:
                raise self._fail(DeviceLimitError(self._in_symbol, self._in_limit, n))
            if n <= max_bytes:  # the common case: hand the record over without a second copy
                self._received += n
                return bytes(memoryview(self._rbuf)[:n])
            self._plain += self._rbuf[:n]
            return self._take(max_bytes)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._handshake_done and self._failed is None:
                self._tls.shutdown()  # queues close_notify (31 bytes)
                self._drain()
        except (TransportError, MbedTLSError) as exc:
            log.debug("close_notify not sent: %s", exc)
        finally:
            self.inner.close()

    def __enter__(self) -> NativeTlsStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------

    def _take(self, max_bytes: int) -> bytes:
        out = bytes(self._plain[:max_bytes])
        del self._plain[:max_bytes]
        self._received += len(out)
        return out

    def _check_usable(self, *, reading: bool = False) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise LinkClosed("the TLS session is closed")
        if not self._handshake_done:
            raise TlsError("the TLS handshake has not run; call handshake() first")

    def _fail(self, exc: TransportError) -> TransportError:
        self._failed = exc
        return exc

    def _inner_recv(self, deadline: float | None, what: str) -> bytes:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return self.inner.recv(MAX_FEED, remaining)
        except ResponseTimeout:
            raise
        except TransportError as exc:
            self._failed = exc
            raise

    def _feed(self, data: bytes) -> None:
        for hdr in self._scanner.feed(data):
            limit = self._in_limit
            if (hdr.content_type == CT_HANDSHAKE and not self._scanner.encrypted
                    and limit is not None and hdr.length > limit):
                raise self._fail(DeviceLimitError(self._in_symbol, limit, hdr.length))
        self._tls.receive_from_network(data)

    def _drain(self, *, handshake: bool = False) -> None:
        while True:
            chunk = self._tls.peek_outgoing(RING_SIZE)
            if not chunk:
                return
            self.inner.send(chunk)
            self._tls.consume_outgoing(len(chunk))
            if handshake:
                self.handshake_writes += 1

    def _handshake_recv(self, deadline: float | None, timeout: float | None) -> bytes:
        """Handshake bytes from the server, with the two silent failures named."""
        try:
            return self._inner_recv(deadline, "the TLS handshake")
        except ResponseTimeout as exc:
            raise self._fail(ResponseTimeout(
                f"TLS handshake answer from {self.server_name}", timeout or 0.0,
                hint="the server accepted the TCP connection but never answered the TLS handshake (not a "
                "TLS port, or a middlebox holding it); the wait is CONFIG_NRFPROV_CONNECT_TIMEOUT_S",
            )) from exc
        except LinkClosed as exc:
            if not self.credentials.has_client_cert or not self._sent_client_flight():
                raise
            # A server that refuses the client certificate sends an alert and closes with the rest of our
            # flight unread, so its TCP sends a reset [RFC 1122 4.2.2.13], and the reset discards what
            # the receiving side has not read yet: over the modem's slower path the alert is lost and
            # the socket reports ECONNRESET (reproduced with an expired claim certificate).
            raise self._fail(LinkClosed(
                f"{self.server_name} reset the connection during the TLS handshake, after our client "
                f"certificate: {exc.message}",
                hint="the likely cause is that the server refused the client certificate: an expired or "
                "revoked claim certificate, or a policy refusing the connection; check the certificate's "
                "validity (openssl x509 -noout -dates -in client-cert.pem) and its status in AWS IoT",
            )) from exc

    def _sent_client_flight(self) -> bool:
        """The server has our first flight and asked for more: we are past ClientHello."""
        return self.inner.bytes_received > 0

    def _handshake_eof(self) -> TransportError:
        if not self.credentials.has_client_cert:
            return self._fail(LinkClosed(
                f"{self.server_name} closed the connection during the TLS handshake",
                hint="no client certificate was configured: the server requires one "
                "(put client-cert.pem and private-key.pem in the certs folder)",
            ))
        return self._fail(LinkClosed(
            f"{self.server_name} closed the connection during the TLS handshake",
            hint="the server may have refused our client certificate, or the broker is down",
        ))

    def _handshake_error(self, exc: MbedTLSError) -> TransportError:
        code = _code(exc)
        if code == ERR_X509_CERT_VERIFY_FAILED:
            why = explain_verify_failure(self._scanner.server_certificate(), self.server_name,
                                         self.credentials)
            return self._fail(CertificateVerifyError(
                f"server certificate of {self.server_name} rejected: {why}", err=code,
                hint="check the CA file (Amazon Root CA 1 and 3 for AWS) and the broker host name",
            ))
        if code == ERR_SSL_FATAL_ALERT_MESSAGE:
            alert = self._scanner.alert_name() or "a fatal alert"
            if not self.credentials.has_client_cert:
                hint = "no client certificate was configured; the server requires one"
            else:
                hint = ("the server refused our client certificate or parameters: an expired or revoked (claim) "
                        "certificate, one from a CA the server does not trust, or a policy refusing it")
            return self._fail(TlsError(f"{self.server_name} aborted the TLS handshake with {alert}",
                                       err=code, hint=hint))
        if code in (ERR_SSL_CONN_EOF, ERR_SSL_PEER_CLOSE_NOTIFY):
            return self._handshake_eof()
        return self._fail(TlsError(f"TLS handshake with {self.server_name} failed: {exc}", err=code))


def _code(exc: BaseException) -> int | None:
    err = getattr(exc, "err", None)
    return abs(int(err)) if isinstance(err, int) else None


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return "" if value is None else str(value)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
