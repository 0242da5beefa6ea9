"""The provisioning journal: issued credentials survive a crash, a kill or a power cut.

Every request to the cloud creates another active certificate [coderbyheart/aws-iot-device-credentials-workaround
lambda/createCertificates.ts; AWS API reference, CreateThing], and a private key
that was never written anywhere is lost for good. So the journal records, each durably before the
next thing happens:

- the *intent* of every request (``record_request``), before it is published: a later ``--resume``
  tells "never requested" from "requested, reply lost" and names what the cloud probably issued;
- every *raw reply* that carries credentials (``save_reply``), the moment it is complete and before
  any slow check, so the window in which a kill loses an issued key is a few disk writes wide;
- the checked *bundle* (``save_bundle``), before the first modem write;
- the *erase* of key material (``erase_key_material``), only after a verified ``%CMNG`` write and a
  successful reconnect.

``nrfprov provision --resume`` continues from this file without asking the cloud again (docs/provisioning.md).

Durability: one JSON file, always replaced atomically (temp file in the same directory, rename), so
a reader sees the old or the new record, never a mix. The writes above are made durable before the
call returns (fsync of the file, rename, fsync of the directory); the others (``begin``,
``record_step``, ``finish``, ``fail``) skip the directory fsync; why that is safe is in ``_write``.
A kill between writing the temp file and the rename leaves the temp file behind: the next ``load``
adopts it when it is a complete, newer record of the same run, and removes it otherwise, so after
any kill no file but the journal holds key material. Privacy: the directory is 0700 and the file
0600 from the moment it exists (``O_CREAT`` with mode, never chmod after the fact).

Failpoints (tests only, docs/reliability.md): ``NRFPROV_FAILPOINT`` names where the process kills
itself with SIGKILL: ``journal:N`` right after the N-th journal write of the run reached its final
name, ``journal-tmp:N`` after the N-th temp file was written and before its rename, and
``journal@KIND:N`` / ``journal-tmp@KIND:N`` the same for the N-th write of one kind (``begin``,
``request``, ``reply``, ``bundle``, ``step``, ``orphan``, ``erase``, ``finish``, ``fail``; ``:N``
defaults to 1).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import json
import os
import re
import signal
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nrfprov.errors import CloudRejected, JournalError, ReplyConflict
from nrfprov.locks import FileLock, folder_lock
from nrfprov.provisioning.bundle import CredentialBundle

JOURNAL_NAME = "provisioning.json"
#: A journal is a few KB (one bundle, a few raw replies); anything far larger is not ours.
JOURNAL_LIMIT = 256 * 1024
#: Version 2 adds the request intents, raw replies, orphans and the run id; version 1 files still load.
VERSION = 2
READABLE_VERSIONS = (1, 2)
#: A genuine credential reply is a few KB (CreateKeysAndCertificate with RSA-2048: ~3.5 KB); a larger
#: one is not journaled raw (it is still parsed and, if good, journaled as a bundle).
REPLY_JOURNAL_LIMIT = 32 * 1024
#: Raw replies kept per run (split: one key and one certificate, plus a few stale or repeated parts).
REPLIES_KEPT = 6
#: The environment variable of the failpoints (see the module docstring).
FAILPOINT_ENV = "NRFPROV_FAILPOINT"


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
    #: One id per run, and a counter per write: which of two copies of a record is newer.
    run_id: str = ""
    seq: int = 0
    #: Request intents, each journaled durably before its request was published (no secrets).
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: Raw credential replies (``topic``, base64 ``payload``, ``at``), journaled before they are parsed.
    replies: list[dict[str, str]] = field(default_factory=list)
    #: Certificates issued (or probably issued) to this device that nothing holds a key for, or that
    #: must not be used; kept from run to run so the user can revoke them. Never key material.
    orphans: list[dict[str, Any]] = field(default_factory=list)
    #: When the reconnect proved the credentials.
    proven_at: str = ""
    #: The certificate a ``--force`` run replaced in the sec tag (to revoke).
    replaced: dict[str, str] | None = None
    #: Certificate ids of a reply conflict (two ``accepted`` for one request): never to be used.
    conflict: list[str] = field(default_factory=list)

    def pending_bundle(self) -> CredentialBundle | None:
        """The bundle to resume with: issued, not yet proven (its key not erased).

        ``key_erased`` alone settles it: the erase is durable and follows the proof, while the
        ``done`` status after it is not fsync'd and may be lost in a crash (see ``Journal._write``).
        """
        if self.bundle is None or self.status == "done" or self.key_erased:
            return None
        return CredentialBundle(**self.bundle)

    @property
    def proven(self) -> bool:
        return self.key_erased or (self.status == "done" and self.bundle is not None)

    def raw_replies(self) -> list[tuple[str, bytes]]:
        """The journaled raw replies, oldest first (only meaningful while no bundle was saved)."""
        return [(r["topic"], base64.b64decode(r["payload"])) for r in self.replies]

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
        self._writes = 0
        self._kinds: dict[str, int] = {}
        self._failpoints = _parse_failpoints(os.environ.get(FAILPOINT_ENV, ""))
        #: What ``load`` did with temp files a killed run left behind, in words (for the log).
        self.recovered: list[str] = []

    def lock(self) -> FileLock:
        """The exclusive lock on the journal folder (``nrfprov.locks``): one run per folder, a second
        one is refused (``LockHeld``, exit 2) before it asks the cloud for anything. Re-entrant for
        the thread holding it; use as a context manager or ``acquire()``/``release()``."""
        return folder_lock(self.dir, "journal folder")

    # --- reading --------------------------------------------------------------------------------

    def load(self) -> JournalRecord | None:
        """The journaled record, after adopting or removing temp files a killed run left behind."""
        current = self._read(self.path)
        leftovers = sorted(self.dir.glob(f".{JOURNAL_NAME}.*.tmp")) if self.dir.is_dir() else []
        if leftovers:
            current = self._recover(current, leftovers)
        return current

    def _read(self, path: Path, *, leftover: bool = False) -> JournalRecord | None:
        try:
            with open(path, "rb") as f:
                data = f.read(JOURNAL_LIMIT + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError(f"cannot read the journal {path}: {exc}") from exc
        if len(data) > JOURNAL_LIMIT:
            raise JournalError(f"{path} is over {JOURNAL_LIMIT} bytes: not an nrfprov journal")
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise TypeError("not a JSON object")
            rec = JournalRecord(**doc)
        except (ValueError, TypeError) as exc:
            if leftover:
                return None  # a temp file cut short by a kill: never a complete record
            raise JournalError(
                f"the journal {path} is damaged: {exc}",
                hint="it may hold issued credentials; inspect it before deleting it",
            ) from exc
        if rec.version not in READABLE_VERSIONS:
            raise JournalError(f"{path} has journal version {rec.version}, this nrfprov reads "
                               f"{', '.join(map(str, READABLE_VERSIONS))}")
        return rec

    def _recover(self, current: JournalRecord | None, leftovers: list[Path]) -> JournalRecord | None:
        """Adopt the newest complete temp file of the current run; remove every other one.

        A temp file is complete once its JSON parses (the rename comes only after the whole write,
        and a kill mid-write leaves a prefix, which never parses). It is newer than the journal when
        it belongs to the same run with a higher write counter, or to a later run.
        """
        best: tuple[Path, JournalRecord] | None = None
        for path in leftovers:
            rec = self._read(path, leftover=True)
            if rec is not None and _newer(rec, best[1] if best else current):
                best = (path, rec)
        adopted = best is not None
        if best is not None:
            path, rec = best
            try:
                os.replace(path, self.path)
                self._sync_dir()
            except OSError as exc:
                raise JournalError(f"cannot adopt the leftover journal copy {path}: {exc}") from exc
            self.recovered.append(f"adopted {path.name}, a complete journal write a killed run had not renamed")
            current = rec
        lost: list[str] = []
        for path in leftovers:
            if best is not None and path == best[0]:
                continue
            rec = self._read(path, leftover=True)
            if rec is not None and rec.pending_bundle() is not None and current is not None:
                cert = str((rec.bundle or {}).get("certificate_id", ""))
                known = {o.get("certificate_id") for o in current.orphans}
                if cert and cert != (current.bundle or {}).get("certificate_id") and cert not in known:
                    lost.append(cert)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            self.recovered.append(f"removed {path.name}, a leftover journal copy"
                                  + (" cut short by a kill" if rec is None else " older than the journal"))
        if lost and current is not None:
            for cert in lost:
                current.orphans.append({"certificate_id": cert, "reason": "issued to an earlier run whose "
                                        "journal write never completed; its key is gone", "at": _now()})
            self._write(current, durable=True, kind="orphan")
        elif adopted and current is not None:
            self._sync_dir()
        return current

    # --- writing --------------------------------------------------------------------------------

    def begin(self, rec: JournalRecord) -> JournalRecord:
        rec.status = "in_progress"
        rec.started_at = rec.started_at or _now()
        rec.run_id = rec.run_id or uuid.uuid4().hex
        rec.version = VERSION
        self._write(rec, kind="begin")
        return rec

    def record_request(self, rec: JournalRecord, intent: dict[str, Any]) -> None:
        """The request described by ``intent`` is about to be published: durable before it is."""
        rec.requests.append({**intent, "at": _now()})
        self._write(rec, durable=True, kind="request")

    def save_reply(self, rec: JournalRecord, topic: str, payload: bytes) -> bool:
        """Journal a raw credential reply durably; False when it is too large or too many to keep."""
        if len(payload) > REPLY_JOURNAL_LIMIT or len(rec.replies) >= REPLIES_KEPT:
            return False
        rec.replies.append({"topic": topic, "payload": base64.b64encode(payload).decode(), "at": _now()})
        self._write(rec, durable=True, kind="reply")  # the only copy of an issued key until the bundle is saved
        return True

    def save_bundle(self, rec: JournalRecord, bundle: CredentialBundle) -> None:
        rec.bundle = asdict(bundle)
        rec.key_erased = False
        self._write(rec, durable=True, kind="bundle")  # the only copy of an issued key until the modem holds it

    def record_step(self, rec: JournalRecord, step: str, detail: str = "") -> None:
        rec.steps.append({"step": step, "detail": detail, "at": _now()})
        self._write(rec, kind="step")

    def add_orphan(self, rec: JournalRecord, orphan: dict[str, Any]) -> None:
        rec.orphans.append({**orphan, "at": orphan.get("at") or _now()})
        self._write(rec, durable=True, kind="orphan")

    def erase_key_material(self, rec: JournalRecord) -> None:
        """Drop the private key, the ownership token and the raw replies; keep what identifies the
        certificate (id, PEM, thing)."""
        if rec.bundle is not None:
            rec.bundle["private_key_pem"] = None
            rec.bundle["ownership_token"] = ""
        rec.replies = []
        rec.key_erased = True
        rec.proven_at = _now()
        self._write(rec, durable=True, kind="erase")  # the key must not outlive its proof on the disk either

    def finish(self, rec: JournalRecord) -> None:
        rec.status = "done"
        rec.error = ""
        self._write(rec, kind="finish")

    def fail(self, rec: JournalRecord, error: BaseException) -> None:
        """Record a failure. Issued, unproven credentials stay resumable (``in_progress``); after the
        proof (key erased) nothing is left to resume, whatever failed afterwards. A request the cloud
        answered with ``rejected`` is marked so (``rejected``): it issued nothing."""
        if rec.key_erased:
            rec.status = "done"
        else:
            rec.status = "failed" if rec.bundle is None and not rec.replies and not rec.requests else "in_progress"
        rec.error = f"{type(error).__name__}: {error}"
        if isinstance(error, CloudRejected) and rec.requests and not rec.requests[-1].get("rejected"):
            # The cloud answered the last request with `rejected` (a throttled request among them): it
            # issued nothing, so no later run counts it as "requested, reply lost" [AWS IoT developer
            # guide, fleet-provision-api: a refused request is answered on .../rejected].
            rec.requests[-1]["rejected"] = {"status_code": error.status_code, "error_code": error.error_code,
                                            "at": _now()}
        if isinstance(error, ReplyConflict):
            rec.conflict = list(error.certificate_ids)  # never resumable: the key may be another's too
        self._write(rec, kind="fail")

    def _write(self, rec: JournalRecord, *, durable: bool = False, kind: str = "") -> None:
        """Replace the journal atomically; fsync only where a lost write could cost a credential.

        ``durable``: fsync the file, rename, fsync the directory, so the record is on the disk when
        this returns (``record_request``, ``save_reply``, ``save_bundle``, ``erase_key_material``).

        Otherwise the directory is not fsync'd, and the file only while the record holds key
        material. Why that is enough:

        - A step record lost in a crash costs nothing: ``--resume`` does not read the step list. It
          continues from the journaled bundle (durable) and redoes the whole tail, every step of
          which is idempotent: CFUN=4 / CFUN=1 set a mode (setting it again is a no-op); LTE
          registration is waited for, not created; ``%CMNG`` delete is ``missing_ok`` and a write
          overwrites the same sec tag/type with the same bytes, verified again by SHA-256; clearing
          subscriptions is local; the reconnect's proof publishes the same shadow document
          (reported state, repeatable). A resume before RegisterThing re-registers only when the
          bundle has no thing name and no RegisterThing intent was journaled; with an intent it
          first tries the new identity (docs/provisioning.md). ``begin`` precedes any cloud request
          and ``finish``/``fail`` follow the durable writes they report on, so losing them loses no
          credential either (a lost ``done`` after the erase is covered by ``key_erased``).
        - Skipping fsync must not endanger the *previous* record: with delayed allocation a crash
          after a rename can leave the new name on an inode whose data never reached the disk (an
          empty file), which would destroy the journaled bundle with it. So while the record holds
          key material (bundle or raw replies saved, key not yet erased) the file is still fsync'd
          before the rename; the rename itself may then be lost, which leaves the older, complete record.
        """
        holds_key = (rec.bundle is not None or bool(rec.replies)) and not rec.key_erased
        sync_file = durable or holds_key
        rec.seq += 1
        data = json.dumps(asdict(rec), indent=1).encode()
        tmp = self.path.with_name(f".{JOURNAL_NAME}.{os.getpid()}.tmp")
        self._writes += 1
        self._kinds[kind] = self._kinds.get(kind, 0) + 1
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
            self._failpoint("journal-tmp")
            self._failpoint(f"journal-tmp@{kind}", self._kinds[kind])
            os.replace(tmp, self.path)
            if durable:
                self._sync_dir()
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise JournalError(
                f"cannot write the journal {self.path}: {exc}",
                hint="free space / fix permissions of the state directory; no modem write happened after this",
            ) from exc
        self._failpoint("journal")
        self._failpoint(f"journal@{kind}", self._kinds[kind])

    def _sync_dir(self) -> None:
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            self._fsync(dfd)
        finally:
            os.close(dfd)

    def _failpoint(self, name: str, count: int | None = None) -> None:
        """SIGKILL this process at a named point (``NRFPROV_FAILPOINT``, tests only): a kill exactly
        there, as a crash would, with nothing cleaned up."""
        if self._failpoints.get(name) == (self._writes if count is None else count):
            os.kill(os.getpid(), signal.SIGKILL)


def _newer(rec: JournalRecord, than: JournalRecord | None) -> bool:
    if than is None:
        return True
    if rec.run_id and rec.run_id == than.run_id:
        return rec.seq > than.seq
    return rec.started_at > than.started_at


_FAILPOINT_RE = re.compile(r"(journal(?:-tmp)?(?:@[a-z]+)?)(?::(\d+))?")


def _parse_failpoints(text: str) -> dict[str, int]:
    """``"journal:3,journal@reply"`` → ``{"journal": 3, "journal@reply": 1}``; anything else is ignored."""
    points: dict[str, int] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        m = _FAILPOINT_RE.fullmatch(item)
        if m is not None and (m.group(2) or "@" in m.group(1)):
            points[m.group(1)] = int(m.group(2) or 1)
    return points
