"""Backend selection: which stream carries MQTT to the broker, decided by the Settings.

- ``native``: TLS runs on the host (Mbed TLS, :class:`NativeTlsStream`) over the modem's raw TCP
  socket, mirroring ``overlay-native_tls.conf``: any AWS message up to 128 KB arrives intact.
- ``offload``: the modem runs TLS itself with the credentials in a sec tag (the default of
  Nordic's aws_iot_provisioning sample):
  incoming TLS records over ~2 KB fail with ``ModemTlsLimitError`` [sdk-nrf PR #20182; aws_iot.rst].
- ``host``: TLS on the host over the host's own TCP (a factory station with its own network).

``open_stream`` logs ONE info line naming the backend and the fragment line that decided it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from nrfprov.config import Settings
from nrfprov.errors import ConnectError, ModemTlsHandshakeError, UsageError
from nrfprov.names import BACKENDS, Backend
from nrfprov.transport.base import ByteStream
from nrfprov.transport.credentials import TlsCredentials
from nrfprov.transport.native_tls import NativeTlsStream
from nrfprov.transport.tcp import HostTcpStream

log = logging.getLogger(__name__)


_WHAT: dict[Backend, str] = {
    "native": "host Mbed TLS over the modem's TCP socket",
    "offload": "the modem's own TLS (~2 KB receive limit per record)",
    "host": "host Mbed TLS over the host's own TCP",
}


class ModemLike(Protocol):
    """The part of ``nrfprov.modem.Modem`` this module uses."""

    def check_raw_binary_safe(self) -> None: ...

    def resolve(self, host: str, *, max_age: float) -> str: ...

    def forget_address(self, host: str) -> None: ...

    def open_tcp(self, host: str, port: int, timeout: float = ...) -> Any: ...

    def open_tls(self, host: str, port: int, sec_tag: int, hostname: str | None = ...,
                 peer_verify: int = ..., timeout: float = ...) -> Any: ...


def describe_backend(settings: Settings, backend: Backend | None = None) -> str:
    """The one log line: backend, what it means and which fragment line chose it."""
    b = backend or settings.tls_backend
    reason = settings.tls_backend_reason if b == settings.tls_backend else "the caller (not the fragments)"
    line = f"TLS backend {b} ({_WHAT.get(b, '?')}), chosen by {reason}"
    if settings.mirror_device_limits and b != "offload":
        lim = settings.device_limits()
        assert lim is not None
        line += (f"; device-mirror limits {lim.in_content_symbol}={lim.in_content_len}, "
                 f"{lim.payload_symbol}={lim.payload_len}")
    return line


def credentials_from_settings(settings: Settings) -> TlsCredentials:
    """The certs folder of the settings (``ca-cert.pem``, ``client-cert.pem``, ``private-key.pem``)."""
    return TlsCredentials.from_folder(settings.certs_dir, ca_file=settings.ca_file or None)


def open_stream(
    settings: Settings,
    *,
    modem: ModemLike | None = None,
    credentials: TlsCredentials | None = None,
    host: str | None = None,
    port: int | None = None,
    server_name: str | None = None,
    sec_tag: int | None = None,
    backend: Backend | None = None,
    timeout: float = 60.0,
) -> ByteStream:
    """Open a connected (and, for TLS on the host, handshaken) stream to the broker.

    ``host``/``port`` default to the broker in the settings; ``server_name`` (SNI and certificate
    check) defaults to the settings' broker host name, then to ``host``. ``sec_tag`` (offload)
    defaults to ``claim_sec_tag``. ``credentials`` (native/host) default to the settings' certs folder.
    """
    b = backend or settings.tls_backend
    if b not in BACKENDS:
        raise UsageError(f"unknown TLS backend {b!r}; choose one of {', '.join(BACKENDS)}")
    # The name checked against the certificate is the configured broker name even when ``host``
    # points the connection elsewhere (the stand-in: connect to 127.0.0.1, verify "localhost").
    name = server_name or settings.broker_host or host or ""
    host = host or settings.broker_host
    port = port or settings.broker_port
    if not host:
        raise UsageError("no broker host", hint="set CONFIG_AWS_IOT_BROKER_HOST_NAME")
    log.info("%s; broker %s:%d", describe_backend(settings, backend), host, port)

    if b == "offload":
        modem = _need_modem(modem, b)
        tag = sec_tag if sec_tag is not None else settings.claim_sec_tag
        if tag is None:
            raise UsageError("the offload backend needs a sec tag holding the TLS credentials",
                             hint="set CONFIG_AWS_IOT_SEC_TAG (Nordic's aws_iot_provisioning sample uses 43)")
        m = modem
        stream: ByteStream = _dial(m, host, settings, lambda addr: m.open_tls(addr, port, tag, name, timeout=timeout))
        return stream

    if b == "native":
        modem = _need_modem(modem, b)  # before the certs folder: a missing modem is the first thing to fix
    creds = credentials if credentials is not None else credentials_from_settings(settings)
    lim = settings.device_limits()
    kw: dict[str, Any] = {"port": port, "timeout": timeout}
    if lim is not None:
        kw.update(in_content_limit=lim.in_content_len, in_content_symbol=lim.in_content_symbol,
                  out_content_len=lim.out_content_len)
    if b == "native":
        assert modem is not None
        # Raw ciphertext through legacy SLM data mode ends at the first "+++" [sdk-nrf serial_lte_modem,
        # slm_at_host.c]:
        # the modem facade refuses that configuration with a DialectError before any byte is sent.
        modem.check_raw_binary_safe()
        m = modem
        inner: ByteStream = _dial(m, host, settings, lambda addr: m.open_tcp(addr, port, timeout=timeout))
    else:
        inner = HostTcpStream.connect(host, port, timeout=timeout)
    return NativeTlsStream.open(inner, creds, name, **kw)


def _dial(modem: ModemLike, host: str, settings: Settings, open_socket: Callable[[str], ByteStream]) -> ByteStream:
    """Open a modem socket to ``host``, reusing the address the modem looked up less than
    ``CONFIG_NRFPROV_DNS_REUSE_S`` seconds ago: the reconnect after provisioning then costs no DNS round
    trip on the air (the modem's own DNS cache is not documented). The TLS name stays the host name
    (``TlsParams.hostname`` / the native bridge's server name), so the certificate check is unchanged. A
    refused connect to a reused address forgets it and dials once more after a fresh lookup (it may
    be stale); a failed TLS handshake is not retried."""
    reuse = settings.dns_reuse_s
    if reuse <= 0:
        return open_socket(host)
    try:
        return open_socket(modem.resolve(host, max_age=reuse))
    except ModemTlsHandshakeError:
        raise
    except ConnectError as exc:
        log.info("connect to the address of %s failed (%s); looking it up again", host, exc)
        modem.forget_address(host)
        return open_socket(modem.resolve(host, max_age=0))


def _need_modem(modem: ModemLike | None, backend: str) -> ModemLike:
    if modem is None:
        raise UsageError(f"the {backend} backend talks through the modem, but no modem was given",
                         hint="pass --port, or choose CONFIG_NRFPROV_TLS_BACKEND=\"host\"")
    return modem
