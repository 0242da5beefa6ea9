"""The nRF91 modem over its serial AT interface: ``Modem`` facade, credentials, sockets."""

from nrfprov.modem.credentials import CredentialInfo, CredentialType
from nrfprov.modem.dialects.base import TlsParams
from nrfprov.modem.facade import Modem
from nrfprov.modem.socket import ModemSocket

__all__ = ["CredentialInfo", "CredentialType", "Modem", "ModemSocket", "TlsParams"]
