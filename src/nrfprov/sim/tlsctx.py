"""The TLS 1.2 client context a simulated modem socket uses, built from one sec tag's credentials."""

from __future__ import annotations

import os
import secrets
import ssl
from pathlib import Path

from nrfprov.sim.store import CredentialStore

# ECDHE suites the nRF91 offers [sdk-nrfxlib nrf_socket.h cipher list], OpenSSL names.
MODEM_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-ECDSA-AES256-SHA384",
        "ECDHE-ECDSA-AES128-SHA",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-RSA-AES128-SHA256",
        "ECDHE-RSA-AES256-SHA384",
        "ECDHE-RSA-AES128-SHA",
        "ECDHE-RSA-AES256-SHA",
    ]
)


def tls_context(
    store: CredentialStore, state_dir: Path, sec_tag: int, peer_verify: int, hostname: str | None
) -> ssl.SSLContext:
    """CA (type 0) for verification, cert (1) + key (2) as client identity. Raises ssl.SSLError/ValueError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # the modem has no TLS 1.3 [nrf_modem supported_features.rst]
    ctx.set_ciphers(MODEM_CIPHERS)
    if peer_verify == 2:
        ctx.verify_mode = ssl.CERT_REQUIRED
        # Without a host name mbedTLS checks the chain only (SLM never sets one itself).
        ctx.check_hostname = hostname is not None
        ca = store.get(sec_tag, 0)
        if ca:  # no CA: the handshake fails verification, as on the modem
            ctx.load_verify_locations(cadata=ca)
    else:  # 0 none; 1 optional (mbedTLS verifies but continues: the outcome is the same here)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = store.get(sec_tag, 1), store.get(sec_tag, 2)
    if cert and key:
        _load_identity(ctx, state_dir, cert, key, store.passwd(sec_tag, 2))
    return ctx


def _load_identity(ctx: ssl.SSLContext, state_dir: Path, cert: str, key: str, passwd: str | None) -> None:
    # ssl loads key material only from files: a 0600 file in the state dir, removed at once.
    path = state_dir / f".tls-{secrets.token_hex(8)}.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, (key.rstrip() + "\n" + cert.rstrip() + "\n").encode("latin-1"))
        finally:
            os.close(fd)
        ctx.load_cert_chain(path, password=passwd)
    finally:
        path.unlink(missing_ok=True)
