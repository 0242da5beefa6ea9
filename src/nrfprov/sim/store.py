"""The simulated modem's non-volatile memory: credential store (%CMNG) and identity (IMEI, UUID).

Everything lives in the state directory so a restarted simulator is the same device:
``credentials.json`` (0600: it holds private keys), ``identity.json``, ``attest_key.pem`` (0600).
Content is kept byte for byte as received between the quotes (latin-1 round trip), because
``%CMNG`` list reports the SHA-256 of exactly what was stored [Nordic AT reference, %CMNG].
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
import uuid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

# %CMNG types the simulator accepts for writing [Nordic AT reference, %CMNG]: 0 CA, 1 cert, 2 key, 3 PSK,
# 4 PSK identity, 5 public key, 6 device identity public key. 7+ are reserved/modem-managed.
WRITABLE_TYPES = range(0, 7)
MAX_SEC_TAG = 2147483647  # [Nordic AT reference, %CMNG]

_CERT_RE = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)
_BLOCK_RE = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
# A PEM body as the modem's parser wants it: every line ends with a real line break (LF or CRLF);
# optional RFC 1421 headers (legacy encrypted keys). Spaces instead of newlines fail (DevZone 127054).
_BODY_RE = re.compile(r"\r?\n(?:[A-Za-z-]+: [^\r\n]*\r?\n)*(?:\r?\n)?(?:[A-Za-z0-9+/=]{1,80}\r?\n)+")


class ContentError(ValueError):
    """Content the real modem rejects; ``cme`` is the code (527) or None for plain ERROR."""

    def __init__(self, reason: str, cme: int | None = 527) -> None:
        super().__init__(reason)
        self.cme = cme


def write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600 from the first byte (no window where the file is readable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def sha256_upper(content: str) -> str:
    return hashlib.sha256(content.encode("latin-1")).hexdigest().upper()


def validate(cred_type: int, content: str, passwd: str | None) -> None:
    """Check content the way the modem does before storing it; raise ContentError if not."""
    if content == "":
        raise ContentError("empty content", cme=None)
    if "\\n" in content:
        raise ContentError("literal backslash-n instead of line breaks")
    for _label, body in _BLOCK_RE.findall(content):
        if not _BODY_RE.fullmatch(body):
            raise ContentError("PEM lines must end with real line breaks")
    if cred_type in (0, 1):
        blocks = _CERT_RE.findall(content)
        if not blocks or _CERT_RE.sub("", content).strip():
            raise ContentError("not PEM certificate(s)")
        for body in blocks:
            pem = f"-----BEGIN CERTIFICATE-----{body}-----END CERTIFICATE-----\n"
            try:
                x509.load_pem_x509_certificate(pem.encode("latin-1"))
            except ValueError as exc:
                raise ContentError(f"certificate does not parse: {exc}") from exc
    elif cred_type == 2:
        if "PRIVATE KEY-----" not in content:
            raise ContentError("not a PEM private key")
        try:
            # A format check, not a key audit: skipping RSA's costly consistency check saves ~70 ms
            # per write (benchmarks/notes.md); 527 only needs "is this a parseable private key".
            serialization.load_pem_private_key(
                content.encode("latin-1"), passwd.encode() if passwd else None, unsafe_skip_rsa_key_validation=True
            )
        except (ValueError, TypeError) as exc:
            raise ContentError(f"private key does not parse: {exc}") from exc
    elif cred_type == 3:
        if len(content) % 2 or not re.fullmatch(r"[0-9A-Fa-f]+", content):
            raise ContentError("PSK must be a hex string")
    elif cred_type in (5, 6):
        try:
            serialization.load_pem_public_key(content.encode("latin-1"))
        except ValueError as exc:
            raise ContentError(f"public key does not parse: {exc}") from exc


class CredentialStore:
    """sec_tag → type → content, persisted after every change. Thread-safe."""

    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "credentials.json"
        self._lock = threading.Lock()
        self._data: dict[int, dict[int, dict[str, str]]] = {}
        if self._path.exists():
            raw = json.loads(self._path.read_text())
            self._data = {
                int(tag): {int(t): entry for t, entry in types.items()} for tag, types in raw.items()
            }

    def _save(self) -> None:
        raw = {str(tag): {str(t): e for t, e in types.items()} for tag, types in self._data.items()}
        write_private(self._path, json.dumps(raw, indent=1, sort_keys=True).encode())

    def put(self, tag: int, cred_type: int, content: str, passwd: str | None = None) -> None:
        entry = {"content": content}
        if passwd:
            entry["passwd"] = passwd
        with self._lock:
            self._data.setdefault(tag, {})[cred_type] = entry
            self._save()

    def delete(self, tag: int, cred_type: int) -> bool:
        with self._lock:
            types = self._data.get(tag, {})
            if cred_type not in types:
                return False
            del types[cred_type]
            if not types:
                del self._data[tag]
            self._save()
            return True

    def get(self, tag: int, cred_type: int) -> str | None:
        with self._lock:
            entry = self._data.get(tag, {}).get(cred_type)
            return entry["content"] if entry else None

    def passwd(self, tag: int, cred_type: int) -> str | None:
        with self._lock:
            entry = self._data.get(tag, {}).get(cred_type)
            return entry.get("passwd") if entry else None

    def entries(self, tag: int | None = None, cred_type: int | None = None) -> list[tuple[int, int, str]]:
        """(tag, type, SHA-256) sorted by tag then type, filtered like ``AT%CMNG=1[,tag[,type]]``."""
        with self._lock:
            out = []
            for t in sorted(self._data):
                if tag is not None and t != tag:
                    continue
                for ty in sorted(self._data[t]):
                    if cred_type is not None and ty != cred_type:
                        continue
                    out.append((t, ty, sha256_upper(self._data[t][ty]["content"])))
            return out

    def tag(self, tag: int) -> dict[int, str]:
        with self._lock:
            return {t: e["content"] for t, e in self._data.get(tag, {}).items()}


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # every second digit from the right of the body, doubled
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    return len(number) >= 2 and number.isdigit() and luhn_digit(number[:-1]) == number[-1]


class Identity:
    """IMEI, device UUID and the device's attestation key, stable per state directory."""

    # Type Allocation Code prefix for made-up devices; not a Nordic TAC.
    TAC = "35000000"

    def __init__(self, state_dir: Path, imei: str | None = None) -> None:
        path = state_dir / "identity.json"
        data: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        changed = False
        if imei is not None:
            if not (len(imei) == 15 and luhn_valid(imei)):
                raise ValueError(f"IMEI {imei!r} is not 15 Luhn-valid digits")
            changed = data.get("imei") != imei
            data["imei"] = imei
        if "imei" not in data:
            body = self.TAC + "".join(str(secrets.randbelow(10)) for _ in range(6))
            data["imei"] = body + luhn_digit(body)
            changed = True
        if "uuid" not in data:
            data["uuid"] = str(uuid.uuid4())
            changed = True
        if changed:
            path.write_text(json.dumps(data, indent=1) + "\n")
        self.imei = data["imei"]
        self.uuid = data["uuid"]
        key_path = state_dir / "attest_key.pem"
        if key_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            assert isinstance(key, ec.EllipticCurvePrivateKey)
            self.attest_key = key
        else:
            self.attest_key = ec.generate_private_key(ec.SECP256R1())
            write_private(
                key_path,
                self.attest_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
