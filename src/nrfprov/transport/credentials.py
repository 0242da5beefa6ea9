"""Credentials for the native TLS bridge: a certs folder, or PEMs in memory.

Nordic's aws_iot_provisioning sample's native-TLS build loads ``ca-cert.pem``, ``client-cert.pem``
and ``private-key.pem`` from its certs folder into the Mbed TLS credential store at run time
(sdk-nrf ``aws_iot`` / MQTT Helper Kconfig, ``CONFIG_MQTT_HELPER_CERTIFICATES_FOLDER`` /
``CONFIG_AWS_IOT_PROVISION_CERTIFICATES``).
:meth:`TlsCredentials.from_folder` reads the same layout; :meth:`TlsCredentials.from_pems` takes a
freshly issued bundle so the provisioning flow can reconnect with it without touching the disk.

python-mbedtls facts this relies on [python-mbedtls tls.py / x509 / pk; measured on this project's loopback]:
``CRT.from_PEM`` takes ``str`` and parses only the FIRST certificate, so chains are split here;
``pk.RSA.from_PEM`` also accepts EC keys (and ``pk.ECC`` RSA keys), so the key type is read from
``key.name`` and the key is re-loaded with the matching class. Unencrypted PKCS#8 and traditional PEM
both load; encrypted keys do not (0x3D62).
"""

from __future__ import annotations

import logging
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from mbedtls import pk, x509
from mbedtls.exceptions import TLSError as MbedTLSError
from mbedtls.tls import TrustStore

from nrfprov.errors import ConfigError, CredentialBundleError, InputFileError, NrfprovError
from nrfprov.files import read_text_bounded

log = logging.getLogger(__name__)

#: File names of Nordic's aws_iot_provisioning sample's certs folder (native TLS, run-time load).
CA_FILE = "ca-cert.pem"
CERT_FILE = "client-cert.pem"
KEY_FILE = "private-key.pem"

#: A PEM file larger than this is not a certificate chain: refuse before parsing. A long AWS chain is
#: ~5 KB; 64 KiB leaves room for a bundle of every public root (certifi's is ~290 KB, not a use case).
MAX_PEM_FILE = 64 * 1024

_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_KEY_RE = re.compile(r"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.+?-----END \1-----", re.S)


def split_certificates(pem: str) -> list[str]:
    """Every ``CERTIFICATE`` block in ``pem``, in order (CRLF normalised)."""
    return [m.group(0) + "\n" for m in _CERT_RE.finditer(pem.replace("\r\n", "\n"))]


@dataclass(frozen=True)
class LoadedKey:
    """A parsed private key and its type (``"EC"`` or ``"RSA"``, from mbedtls' ``key.name``)."""

    key: pk.CipherBase = field(repr=False)
    key_type: str
    size_bytes: int


def load_private_key(pem: str, *, source: str = "private key") -> LoadedKey:
    """Parse an unencrypted PKCS#8 or traditional (``RSA``/``EC PRIVATE KEY``) PEM key."""
    m = _KEY_RE.search(pem.replace("\r\n", "\n"))
    if m is None:
        raise CredentialBundleError(f"{source}: no PEM private key block found")
    if m.group(1) == "ENCRYPTED PRIVATE KEY" or "Proc-Type: 4,ENCRYPTED" in m.group(0):
        raise CredentialBundleError(
            f"{source}: the private key is encrypted", hint="store it unencrypted with mode 0600"
        )
    block = m.group(0) + "\n"
    try:
        probe = pk.RSA.from_PEM(block)  # accepts EC keys too; .name tells which [python-mbedtls pk]
        name = bytes(probe.name)
        key: pk.CipherBase = pk.ECC.from_PEM(block) if name == b"EC" else probe
    except MbedTLSError as exc:
        # str(exc) carries the Mbed TLS code and text; it never contains key material.
        raise CredentialBundleError(f"{source}: cannot parse the private key: {exc}") from exc
    key_type = name.decode("ascii", "replace")
    if key_type not in ("EC", "RSA"):
        raise CredentialBundleError(f"{source}: unsupported key type {key_type}; use EC P-256 or RSA")
    return LoadedKey(key, key_type, int(key.key_size))


@dataclass(frozen=True, repr=False)
class TlsCredentials:
    """Trust anchors plus (optionally) a client certificate chain and its private key.

    Without a client certificate the bridge offers none, which AWS IoT and the stand-in refuse; that
    is allowed on purpose so the refusal itself can be tested and reported clearly.
    """

    ca_pem: str
    client_cert_pem: str | None = None
    private_key_pem: str | None = None
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if (self.client_cert_pem is None) != (self.private_key_pem is None):
            raise CredentialBundleError(
                f"{self.source}: a client certificate needs its private key and vice versa"
            )

    def __repr__(self) -> str:  # never show key material
        return (
            f"TlsCredentials(source={self.source!r}, cas={len(split_certificates(self.ca_pem))}, "
            f"client_cert={'yes' if self.client_cert_pem else 'no'})"
        )

    @classmethod
    def from_pems(cls, ca_pem: str, client_cert_pem: str | None = None,
                  private_key_pem: str | None = None, *, source: str = "<memory>") -> TlsCredentials:
        creds = cls(ca_pem, client_cert_pem, private_key_pem, source)
        creds.validate(error=CredentialBundleError)
        return creds

    @classmethod
    def from_files(cls, ca_file: str | Path, cert_file: str | Path | None = None,
                   key_file: str | Path | None = None) -> TlsCredentials:
        ca = _read_pem(Path(ca_file))
        cert = _read_pem(Path(cert_file)) if cert_file is not None else None
        key = _read_pem(Path(key_file), secret=True) if key_file is not None else None
        source = str(Path(cert_file).parent if cert_file is not None else Path(ca_file).parent)
        try:
            creds = cls(ca, cert, key, source)
        except CredentialBundleError as exc:
            raise ConfigError(exc.message, path=source) from exc
        creds.validate(error=ConfigError)
        return creds

    @classmethod
    def from_folder(cls, folder: str | Path, *, ca_file: str | Path | None = None) -> TlsCredentials:
        """Nordic's aws_iot_provisioning sample's layout: ``ca-cert.pem``, ``client-cert.pem``, ``private-key.pem``.

        ``ca_file`` overrides the folder's CA (e.g. ``CONFIG_NRFPROV_CA_FILE``). The client pair is
        optional as a whole (both files or neither).
        """
        d = Path(folder)
        ca = Path(ca_file) if ca_file else d / CA_FILE
        cert, key = d / CERT_FILE, d / KEY_FILE
        if cert.exists() != key.exists():
            missing = key if cert.exists() else cert
            raise ConfigError(f"{missing.name} is missing next to its pair", path=str(d),
                              hint=f"a certs folder holds {CA_FILE}, {CERT_FILE} and {KEY_FILE}")
        if cert.exists():
            return cls.from_files(ca, cert, key)
        return cls.from_files(ca)

    @property
    def has_client_cert(self) -> bool:
        return self.client_cert_pem is not None

    def validate(self, *, error: type[NrfprovError] = CredentialBundleError) -> None:
        """Parse everything once, so a bad PEM fails here and not halfway into a handshake."""
        try:
            self.trust_store()
            if self.client_cert_pem is not None:
                self.certificate_chain()
        except CredentialBundleError as exc:
            if error is CredentialBundleError:
                raise
            raise ConfigError(exc.message, path=self.source, hint=exc.hint) from exc

    def trust_store(self) -> TrustStore:
        blocks = split_certificates(self.ca_pem)
        if not blocks:
            raise CredentialBundleError(f"{self.source}: the CA file holds no PEM certificate")
        store = TrustStore()
        for i, block in enumerate(blocks):
            store.add(_parse_cert(block, f"{self.source}: CA certificate #{i + 1}"))
        return store

    def certificate_chain(self) -> tuple[tuple[x509.CRT, ...], pk.CipherBase] | None:
        if self.client_cert_pem is None or self.private_key_pem is None:
            return None
        blocks = split_certificates(self.client_cert_pem)
        if not blocks:
            raise CredentialBundleError(f"{self.source}: the client certificate file holds no PEM certificate")
        chain = tuple(_parse_cert(b, f"{self.source}: client certificate #{i + 1}") for i, b in enumerate(blocks))
        key = load_private_key(self.private_key_pem, source=f"{self.source}: private key")
        return chain, key.key

    @property
    def key_type(self) -> str | None:
        if self.private_key_pem is None:
            return None
        return load_private_key(self.private_key_pem, source=self.source).key_type


def _parse_cert(block: str, what: str) -> x509.CRT:
    try:
        return x509.CRT.from_PEM(block)
    except (MbedTLSError, ValueError) as exc:
        raise CredentialBundleError(f"{what} does not parse: {exc}") from exc


def _read_pem(path: Path, *, secret: bool = False) -> str:
    # Bounded and regular files only (nrfprov.files): a FIFO or /dev/zero in a certs folder must not
    # hang the run or fill memory.
    try:
        text = read_text_bounded(path, MAX_PEM_FILE, "PEM file")
    except InputFileError as exc:
        hint = f"a certs folder holds {CA_FILE}, {CERT_FILE} and {KEY_FILE}" if exc.reason == "no such file" \
            else exc.hint
        raise ConfigError(exc.reason, path=str(path), hint=hint) from exc
    if secret and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s is readable by other users; private keys should be mode 0600", path)
    return text
