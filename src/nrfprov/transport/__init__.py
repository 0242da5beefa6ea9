"""Byte streams with one interface: modem raw socket, modem TLS, native TLS bridge, host TCP."""

from nrfprov.transport.base import ByteStream

__all__ = ["ByteStream"]
