"""The provisioning journal: issued credentials survive a crash, a kill or a power cut.

Every request to the cloud creates another active certificate [coderbyheart/aws-iot-device-credentials-workaround
lambda/createCertificates.ts; AWS API reference, CreateThing], and a private key
that was never written anywhere is lost for good. So the issued bundle is written here *before* the
first modem write, each finished step is recorded, and the key material is erased only after a
verified ``%CMNG`` write and a successful reconnect. ``nrfprov provision --resume`` continues from
this file without asking the cloud again.

Durability: one JSON file, always replaced atomically (temp file in the same directory, rename), so
a reader sees the old or the new record, never a mix. Only the writes whose loss could lose or
duplicate a credential are made durable before the call returns (fsync of the file, rename, fsync of
the directory): ``save_bundle`` (before the first modem write) and ``erase_key_material``. The other
writes (``begin``, ``record_step``, ``finish``, ``fail``) skip the directory fsync; why that is safe
is in ``_write``. Privacy: the directory is 0700 and the file 0600 from the moment it exists
(``O_CREAT`` with mode, never chmod after the fact).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nrfprov.errors import JournalError
from nrfprov.locks import FileLock, folder_lock
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
        """The bundle to resume with: issued, not yet proven (its key not erased).

        ``key_erased`` alone settles it: the erase is durable and follows the proof, while the
        ``done`` status after it is not fsync'd and may be lost in a crash (see ``Journal._write``).
        """
        if self.bundle is None or self.status == "done" or self.key_erased:
            return None
        return CredentialBundle(**self.bundle)

    def step_names(self) -> list[str]:
        return [s["step"] for s in self.steps]


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


class Journal:
    def __init__(self, state_dir: str | os.PathLike[str], *, fsync: Callable[[int], None] = os.fsync) -> None:
        """``fsync`` is the call that makes a file descriptor durable (``os.fsync``); a test may pass a
        wrapper that counts the calls and still calls ``os.fsync``."""
        self.dir = Path(state_dir)
        self.path = self.dir / JOURNAL_NAME
        self._fsync = fsync

    def lock(self) -> FileLock:
        """The exclusive lock on the journal folder (``nrfprov.locks``): one run per folder, a second
        one is refused (``LockHeld``, exit 2) before it asks the cloud for anything. Re-entrant for
        the thread holding it; use as a context manager or ``acquire()``/``release()``."""
        return folder_lock(self.dir, "journal folder")

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
        self._write(rec, durable=True)  # the only copy of an issued key until the modem holds it

    def record_step(self, rec: JournalRecord, step: str, detail: str = "") -> None:
        rec.steps.append({"step": step, "detail": detail, "at": _now()})
        self._write(rec)

    def erase_key_material(self, rec: JournalRecord) -> None:
        """Drop the private key and the ownership token; keep what identifies the certificate."""
        if rec.bundle is not None:
            rec.bundle["private_key_pem"] = None
            rec.bundle["ownership_token"] = ""
        rec.key_erased = True
        self._write(rec, durable=True)  # the key must not outlive its proof on the disk either

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

    def _write(self, rec: JournalRecord, *, durable: bool = False) -> None:
        """Replace the journal atomically; fsync only where a lost write could cost a credential.

        ``durable``: fsync the file, rename, fsync the directory, so the record is on the disk when
        this returns (``save_bundle``, ``erase_key_material``).

        Otherwise the directory is not fsync'd, and the file only while the record holds key
        material. Why that is enough:

        - A step record lost in a crash costs nothing: ``--resume`` does not read the step list. It
          continues from the journaled bundle (durable) and redoes the whole tail, every step of
          which is idempotent: CFUN=4 / CFUN=1 set a mode (setting it again is a no-op); LTE
          registration is waited for, not created; ``%CMNG`` delete is ``missing_ok`` and a write
          overwrites the same sec tag/type with the same bytes, verified again by SHA-256; clearing
          subscriptions is local; the reconnect's proof publishes the same shadow document
          (reported state, repeatable). A resume before RegisterThing re-registers only when the
          bundle has no thing name, and that name arrives by ``save_bundle`` (durable). ``begin``
          precedes any cloud request and ``finish``/``fail`` follow the durable writes they report on,
          so losing them loses no credential either (``fail`` leaves issued credentials
          ``in_progress``, which is also what the durable record says; a lost ``done`` after the
          erase is covered by ``pending_bundle`` reading ``key_erased``).
        - Skipping fsync must not endanger the *previous* record: with delayed allocation a crash
          after a rename can leave the new name on an inode whose data never reached the disk (an
          empty file), which would destroy the journaled bundle with it. So while the record holds
          key material (bundle saved, key not yet erased) the file is still fsync'd before the
          rename; the rename itself may then be lost, which leaves the older, complete record.
        """
        holds_key = rec.bundle is not None and not rec.key_erased
        sync_file = durable or holds_key
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
                if sync_file:
                    self._fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            if durable:
                dfd = os.open(self.dir, os.O_RDONLY)
                try:
                    self._fsync(dfd)
                finally:
                    os.close(dfd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise JournalError(
                f"cannot write the journal {self.path}: {exc}",
                hint="free space / fix permissions of the state directory; no modem write happened after this",
            ) from exc
