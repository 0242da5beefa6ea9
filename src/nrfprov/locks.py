"""Exclusive locks on a serial port and on a journal folder: one nrfprov at a time on each.

Two runs on one port interleave their AT commands and each takes the other's answers; two runs
sharing a journal folder overwrite each other's issued keys. So both are locked, and the second
process is refused at once (:class:`~nrfprov.errors.LockHeld`, exit 2, naming the holder's PID)
before it sends a byte or a request.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on a lock file that holds the holder's PID. The kernel
releases a flock when the last descriptor of the open file is closed, which includes the death of
the process, so a SIGKILLed holder never blocks the next run and no stale lock is ever cleaned up
[Linux ``flock(2)``]. Lock files are never deleted (deleting one while another process waits on it
would let two processes hold "the" lock).

Within one process a lock is re-entrant for the thread that holds it (the CLI may take the journal
lock before the driver does), and refused to any other thread.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import sys
import threading
from pathlib import Path

from nrfprov.errors import LockHeld, UsageError

#: The name of the lock file inside a locked folder (the journal folder).
FOLDER_LOCK_NAME = ".nrfprov.lock"

_held: dict[str, tuple[int, int, int]] = {}  # key -> (fd, owner thread id, depth)
_held_guard = threading.Lock()


class FileLock:
    """An exclusive ``flock`` on ``path`` (created 0600), describing ``what`` it protects in errors."""

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._key = os.path.abspath(self.path)
        self._acquired = False

    def acquire(self) -> FileLock:
        me = threading.get_ident()
        with _held_guard:
            held = _held.get(self._key)
            if held is not None:
                fd, owner, depth = held
                if owner != me:
                    raise LockHeld(self.what, str(self.path), os.getpid(),
                                   hint="another run in this process uses it")
                _held[self._key] = (fd, owner, depth + 1)
                self._acquired = True
                return self
            fd = self._open()
            try:
                _lock_fd(fd)
            except OSError as exc:
                pid = _read_pid(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise LockHeld(self.what, str(self.path), pid) from None
                raise UsageError(f"cannot lock {self.path} for {self.what}: {exc.strerror}") from exc
            try:  # the holder's PID, for the refusal message of the next process
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError:
                pass  # the lock holds without the PID; the next process then says "PID unknown"
            _held[self._key] = (fd, me, 1)
            self._acquired = True
            return self

    def release(self) -> None:
        if not self._acquired:
            return
        self._acquired = False
        with _held_guard:
            held = _held.get(self._key)
            if held is None:
                return
            fd, owner, depth = held
            if depth > 1:
                _held[self._key] = (fd, owner, depth - 1)
                return
            del _held[self._key]
            os.close(fd)  # closing the only descriptor releases the flock

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            raise UsageError(f"cannot create the lock file {self.path} for {self.what}: {exc.strerror}",
                             hint="check the folder's permissions") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UsageError(f"{self.path} (the lock file for {self.what}) is not a regular file")
        return fd


def _lock_fd(fd: int) -> None:
    """Exclusive, non-blocking; OSError (EWOULDBLOCK / EACCES) when another process holds it."""
    if sys.platform == "win32":
        import msvcrt

        # Windows locks are mandatory: lock one byte far past the PID so the PID stays readable.
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


_WIN_LOCK_OFFSET = 1 << 20


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


# --- what is locked where -----------------------------------------------------------------------


def lock_dir() -> Path:
    """A private folder for port lock files: ``$XDG_RUNTIME_DIR/nrfprov`` (per user, 0700 by the XDG
    Base Directory Specification), else ``/tmp/nrfprov-<uid>``, created 0700 and checked to be ours,
    so no other user can plant a file there."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        base = Path(runtime) / "nrfprov"
    elif sys.platform == "win32":  # per-user already; Windows opens a COM port for one program only
        base = Path(os.environ.get("LOCALAPPDATA") or os.path.expanduser("~")) / "nrfprov" / "locks"
    else:
        base = Path(f"/tmp/nrfprov-{os.getuid()}")
    try:
        base.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(base)
    except OSError as exc:
        raise UsageError(f"cannot create nrfprov's lock folder {base}: {exc.strerror}") from exc
    if sys.platform != "win32" and (
        not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077
    ):
        raise UsageError(f"{base} (nrfprov's lock folder) is not a private folder of this user",
                         hint="remove it, or set XDG_RUNTIME_DIR")
    return base


def is_device_path(url: str) -> bool:
    """A serial URL that names a file (``/dev/ttyACM0``, a pty, a symlink to one), not ``socket://``."""
    return "://" not in url


def port_lock(url: str) -> FileLock:
    """The lock for a serial port. A device path is keyed by its resolved path, so a symlink
    (``/dev/serial/by-id/...``, ``nrfprov sim --link``) and the device it points at are one port;
    any other URL (``socket://host:port``) is keyed by its text."""
    key = os.path.realpath(url) if is_device_path(url) else url
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("_")[-60:]
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return FileLock(lock_dir() / f"port-{readable}-{digest}.lock", f"serial port {url}"
                    + (f" ({key})" if key != url else ""))


def folder_lock(folder: str | os.PathLike[str], what: str) -> FileLock:
    """The lock for a folder (created 0700 if missing): a lock file inside it."""
    path = Path(folder)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {path} for {what}: {exc.strerror}") from exc
    return FileLock(path / FOLDER_LOCK_NAME, f"{what} {path}")


def flock_holders(path: str | os.PathLike[str]) -> list[int]:
    """PIDs holding a ``flock`` on the file at ``path``, from ``/proc/locks`` (Linux; else []).

    pyserial's ``exclusive=True`` flocks the tty itself; when another user's process holds it, this is
    how the refusal can still name the holder [Linux ``proc(5)``, /proc/locks]."""
    try:
        st = os.stat(path)
        text = Path("/proc/locks").read_text()
    except OSError:
        return []
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    for line in text.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:05:567 0 EOF"
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == want and fields[4].isdigit():
            pids.append(int(fields[4]))
    return pids

