"""Byte streams with one interface: modem raw socket, modem TLS, native TLS bridge, host TCP.

- :class:`ByteStream` — the interface (``base``); modem sockets (``nrfprov.modem.ModemSocket``)
  implement it directly, raw TCP and modem-offloaded TLS alike.
- :class:`NativeTlsStream` — TLS 1.2 on the host with python-mbedtls over any ``ByteStream``.
- :class:`HostTcpStream` — the host's own TCP (``TCP_NODELAY``).
- :func:`open_stream` — picks the backend from Settings and logs why.
- :class:`TlsCredentials` — certs folder (``ca-cert.pem``, ``client-cert.pem``, ``private-key.pem``)
  or PEMs in memory.
"""

from nrfprov.transport.backends import describe_backend, open_stream
from nrfprov.transport.base import ByteStream, SelectableStream, layer_counters
from nrfprov.transport.credentials import TlsCredentials, load_private_key
from nrfprov.transport.native_tls import NativeTlsStream
from nrfprov.transport.tcp import HostTcpStream

__all__ = [
    "ByteStream",
    "HostTcpStream",
    "NativeTlsStream",
    "SelectableStream",
    "TlsCredentials",
    "describe_backend",
    "layer_counters",
    "load_private_key",
    "open_stream",
]
