"""The provisioning journal: issued credentials survive a crash, a kill or a power cut.

Every request to the cloud creates another active certificate (aws-iot.md §2), and a private key
that was never written anywhere is lost for good. So the issued bundle is written here *before* the
first modem write, each finished step is recorded, and the key material is erased only after a
verified ``%CMNG`` write and a successful reconnect. ``nrfprov provision --resume`` continues from
this file without asking the cloud again.

Durability: one JSON file, replaced atomically (temp file in the same directory, fsync, rename,
fsync of the directory). Privacy: the directory is 0700 and the file 0600 from the moment it
exists (``O_CREAT`` with mode, never chmod after the fact).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nrfprov.errors import JournalError
from nrfprov.provisioning.bundle import CredentialBundle

JOURNAL_NAME = "provisioning.json"
#: A journal is a few KB (one bundle); anything far larger is not ours.
JOURNAL_LIMIT = 256 * 1024
VERSION = 1


@dataclass
class JournalRecord:
    version: int = VERSION
    status: str = "new"  # new · in_progress · done · failed
    flow: str = ""
    payload_format: str = ""
    backend: str = ""
    client_id: str = ""
    provisioned_sec_tag: int = 0
    started_at: str = ""
    steps: list[dict[str, str]] = field(default_factory=list)
    bundle: dict[str, Any] | None = None
    key_erased: bool = False
    error: str = ""

    def pending_bundle(self) -> CredentialBundle | None:
        """The bundle to resume with: issued, not yet proven (its key not erased)."""
        if self.bundle is None or self.status == "done":
            return None
        return CredentialBundle(**self.bundle)

    def step_names(self) -> list[str]:
        return [s["step"] for s in self.steps]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


class Journal:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / JOURNAL_NAME

    # --- reading --------------------------------------------------------------------------------

    def load(self) -> JournalRecord | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read(JOURNAL_LIMIT + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError(f"cannot read the journal {self.path}: {exc}") from exc
        if len(data) > JOURNAL_LIMIT:
            raise JournalError(f"{self.path} is over {JOURNAL_LIMIT} bytes: not an nrfprov journal")
        try:
            doc = json.loads(data)
            rec = JournalRecord(**doc)
        except (ValueError, TypeError) as exc:
            raise JournalError(
                f"the journal {self.path} is damaged: {exc}",
                hint="it may hold issued credentials; inspect it before deleting it",
            ) from exc
        if rec.version != VERSION:
            raise JournalError(f"{self.path} has journal version {rec.version}, this nrfprov reads {VERSION}")
        return rec

    # --- writing --------------------------------------------------------------------------------

    def begin(self, rec: JournalRecord) -> JournalRecord:
        rec.status = "in_progress"
        rec.started_at = rec.started_at or _now()
        self._write(rec)
        return rec

    def save_bundle(self, rec: JournalRecord, bundle: CredentialBundle) -> None:
        rec.bundle = asdict(bundle)
        rec.key_erased = False
        self._write(rec)

    def record_step(self, rec: JournalRecord, step: str, detail: str = "") -> None:
        rec.steps.append({"step": step, "detail": detail, "at": _now()})
        self._write(rec)

    def erase_key_material(self, rec: JournalRecord) -> None:
        """Drop the private key and the ownership token; keep what identifies the certificate."""
        if rec.bundle is not None:
            rec.bundle["private_key_pem"] = None
            rec.bundle["ownership_token"] = ""
        rec.key_erased = True
        self._write(rec)

    def finish(self, rec: JournalRecord) -> None:
        rec.status = "done"
        rec.error = ""
        self._write(rec)

    def fail(self, rec: JournalRecord, error: BaseException) -> None:
        """Record a failure. Issued, unproven credentials stay resumable (``in_progress``); after the
        proof (key erased) nothing is left to resume, whatever failed afterwards."""
        if rec.key_erased:
            rec.status = "done"
        else:
            rec.status = "failed" if rec.bundle is None else "in_progress"
        rec.error = f"{type(error).__name__}: {error}"
        self._write(rec)

    def _write(self, rec: JournalRecord) -> None:
        data = json.dumps(asdict(rec), indent=1).encode()
        tmp = self.path.with_name(f".{JOURNAL_NAME}.{os.getpid()}.tmp")
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # O_EXCL after a stale unlink: the key never lands in a file someone else opened.
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            dfd = os.open(self.dir, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise JournalError(
                f"cannot write the journal {self.path}: {exc}",
                hint="free space / fix permissions of the state directory; no modem write happened after this",
            ) from exc
