"""The stand-in's registry of certificates, things, ownership tokens and grants, persisted as JSON.

One file (``registry.json``) in the state directory. Every change is a transaction: a thread lock
plus ``flock`` on ``registry.lock`` (so ``nrfprov cloud revoke`` in another process cannot lose an
update), load, mutate, atomic replace.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Certificate statuses use AWS's names [API_CertificateDescription].
PENDING = "PENDING_ACTIVATION"
ACTIVE = "ACTIVE"
INACTIVE = "INACTIVE"
REVOKED = "REVOKED"

# Ownership tokens expire after one hour [fleet-provision-api: CreateCertificateFromCsr; for
# CreateKeysAndCertificate the same rule is our assumption]. LocalAwsIot(token_lifetime=...) changes it.
TOKEN_LIFETIME_S = 3600.0

SCHEMA = 1


@dataclass(frozen=True)
class CertificateRecord:
    certificate_id: str
    status: str
    thing_name: str | None
    operation: str  # "split", "create", "create-from-csr", "identity", "claim", "responder"
    created_at: float  # seconds since the epoch (the stand-in's clock)
    common_name: str
    serial: int


class TokenProblem(Exception):
    """Why an ownership token cannot be used; ``reason`` becomes the rejected errorMessage."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _token_key(token: str) -> str:
    # Tokens are bearer secrets: keep only their hash at rest.
    return hashlib.sha256(token.encode()).hexdigest()


def _empty() -> dict[str, Any]:
    return {"schema": SCHEMA, "certificates": {}, "things": {}, "tokens": {}, "grants": {}}


class Registry:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "registry.json"
        self._lock_path = state_dir / "registry.lock"
        self._mutex = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Yield the registry data for change; saved atomically when the block ends without error."""
        with self._mutex, open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self._load()
                yield data
                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
                os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def snapshot(self) -> dict[str, Any]:
        with self._mutex, open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            try:
                return self._load()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return _empty()
        data: dict[str, Any] = json.loads(self.path.read_text())
        if data.get("schema") != SCHEMA:
            raise ValueError(f"{self.path}: registry schema {data.get('schema')!r}, expected {SCHEMA}")
        return data

    # --- certificates ----------------------------------------------------------------------------

    def add_certificate(
        self,
        data: dict[str, Any],
        *,
        certificate_id: str,
        common_name: str,
        serial: int,
        status: str,
        operation: str,
        created_at: float,
        thing_name: str | None = None,
        pem: str | None = None,
    ) -> None:
        data["certificates"][certificate_id] = {
            "certificate_id": certificate_id,
            "common_name": common_name,
            "serial": str(serial),  # JSON numbers lose precision past 2**53; serials are 159-bit
            "status": status,
            "operation": operation,
            "created_at": created_at,
            "thing_name": thing_name,
            "things": [thing_name] if thing_name else [],
            "policies": [],
            "pem": pem,
        }

    @staticmethod
    def record(entry: dict[str, Any]) -> CertificateRecord:
        return CertificateRecord(
            certificate_id=entry["certificate_id"],
            status=entry["status"],
            thing_name=entry.get("thing_name"),
            operation=entry["operation"],
            created_at=float(entry["created_at"]),
            common_name=entry["common_name"],
            serial=int(entry["serial"]),
        )

    def certificates(self) -> list[CertificateRecord]:
        """Every certificate but deleted ones (a deleted certificate stays in the CRL only)."""
        data = self.snapshot()
        recs = [self.record(e) for e in data["certificates"].values() if not e.get("deleted")]
        return sorted(recs, key=lambda r: (r.created_at, r.certificate_id))

    # --- tokens ----------------------------------------------------------------------------------

    def add_token(self, data: dict[str, Any], token: str, certificate_id: str, now: float) -> None:
        data["tokens"][_token_key(token)] = {"certificate_id": certificate_id, "created_at": now, "used": False}

    def check_token(self, data: dict[str, Any], token: str, now: float, *, lifetime: float = TOKEN_LIFETIME_S) -> str:
        """The certificate ID the token stands for; raises TokenProblem if unknown, used or expired."""
        entry = data["tokens"].get(_token_key(token))
        if entry is None:
            raise TokenProblem("Certificate ownership token is invalid.")
        if entry["used"]:
            raise TokenProblem("Certificate ownership token has already been used.")
        if now - float(entry["created_at"]) >= lifetime:
            raise TokenProblem("Certificate ownership token has expired.")
        cert = data["certificates"].get(entry["certificate_id"])
        if cert is None or cert["status"] != PENDING:
            raise TokenProblem("Certificate ownership token refers to a certificate that is not pending.")
        return str(entry["certificate_id"])

    def use_token(self, data: dict[str, Any], token: str) -> None:
        data["tokens"][_token_key(token)]["used"] = True

    # --- things, principals, policies and grants ----------------------------------------------
    # A thing: {"thing_name", "created_at", "attributes", "version", "certificates": [principal ids]}.
    # A certificate's "things" and "policies" mirror AttachThingPrincipal / AttachPolicy; "thing_name"
    # is the first attached thing (what `cloud list` shows). Entries written before these fields
    # existed read as version 1 / nothing attached.

    @staticmethod
    def thing(data: dict[str, Any], name: str) -> dict[str, Any] | None:
        entry: dict[str, Any] | None = data["things"].get(name)
        if entry is not None:
            entry.setdefault("version", 1)
            entry.setdefault("attributes", {})
            entry.setdefault("certificates", [])
        return entry

    @staticmethod
    def create_thing(data: dict[str, Any], name: str, now: float) -> dict[str, Any]:
        entry = {"thing_name": name, "created_at": now, "attributes": {}, "version": 1, "certificates": []}
        data["things"][name] = entry
        return entry

    @staticmethod
    def attach_thing(data: dict[str, Any], thing: str, certificate_id: str) -> None:
        t = Registry.thing(data, thing)
        cert = data["certificates"][certificate_id]
        assert t is not None
        if certificate_id not in t["certificates"]:
            t["certificates"].append(certificate_id)
        things: list[str] = cert.setdefault("things", [])
        if thing not in things:
            things.append(thing)
        cert["thing_name"] = things[0]

    @staticmethod
    def detach_thing(data: dict[str, Any], thing: str, certificate_id: str) -> None:
        t = Registry.thing(data, thing)
        cert = data["certificates"][certificate_id]
        if t is not None and certificate_id in t["certificates"]:
            t["certificates"].remove(certificate_id)
        things: list[str] = cert.setdefault("things", [])
        if thing in things:
            things.remove(thing)
        cert["thing_name"] = things[0] if things else None

    @staticmethod
    def attached_policies(entry: dict[str, Any]) -> list[str]:
        policies: list[str] = entry.setdefault("policies", [])
        return policies

    @staticmethod
    def add_grant(data: dict[str, Any], cn: str, thing: str) -> None:
        things: list[str] = data["grants"].setdefault(cn, [])
        if thing not in things:
            things.append(thing)

    @staticmethod
    def effective_grants(data: dict[str, Any], device_policy: str) -> dict[str, list[str]]:
        """CN -> things whose topics it may use: grants made directly (``grant_device``), plus every
        certificate with the device policy attached, for each thing attached to it (as AWS's device
        policy grants ``$aws/things/${iot:ClientId}/`` with ``iot:Connection.Thing.IsAttached``)."""
        out: dict[str, list[str]] = {cn: list(things) for cn, things in data["grants"].items()}
        for e in data["certificates"].values():
            if e.get("deleted") or device_policy not in e.get("policies", []):
                continue
            things = out.setdefault(str(e["common_name"]), [])
            things += [t for t in e.get("things", []) if t not in things]
        return out

    @staticmethod
    def principals(data: dict[str, Any]) -> set[str]:
        return {str(e["common_name"]) for e in data["certificates"].values()}

    @staticmethod
    def crl_entries(data: dict[str, Any]) -> list[tuple[int, float, bool]]:
        """(serial, since, on_hold): revoked, inactive and deleted certs, and pending ones (held)."""
        out = []
        for e in data["certificates"].values():
            if e["status"] in (REVOKED, INACTIVE) or e.get("deleted"):
                out.append((int(e["serial"]), float(e.get("revoked_at", e["created_at"])), False))
            elif e["status"] == PENDING:
                out.append((int(e["serial"]), float(e["created_at"]), True))
        return out
