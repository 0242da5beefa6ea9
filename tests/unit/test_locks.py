"""nrfprov.locks: one holder per port and per journal folder, refused with the holder's PID, released
by the kernel when the holder dies (real processes, real flock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nrfprov.errors import LockHeld
from nrfprov.locks import FileLock, flock_holders, folder_lock, port_lock

HOLDER = """
import sys, time
from nrfprov.locks import FileLock
FileLock(sys.argv[1], "the thing").acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin or kills us
"""


def _holder(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    proc = _holder(path)
    try:
        with pytest.raises(LockHeld) as info:
            FileLock(path, "the thing").acquire()
        assert info.value.pid == proc.pid
        assert f"process {proc.pid}" in str(info.value) and info.value.exit_code == 2
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_dead_holder_never_blocks_the_next_run(tmp_path: Path, sig: signal.Signals) -> None:
    path = tmp_path / "x.lock"
    proc = _holder(path)
    proc.send_signal(sig)
    proc.wait(10)
    assert path.read_text().strip() == str(proc.pid)  # the file stays; the kernel dropped the flock
    with FileLock(path, "the thing"):
        assert path.read_text().strip() == str(os.getpid())


def test_reentrant_for_the_holding_thread_refused_to_another(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    outer = FileLock(path, "the thing").acquire()
    inner = FileLock(path, "the thing").acquire()  # the CLI and then the driver take the journal lock
    refused: list[BaseException] = []

    def other() -> None:
        try:
            FileLock(path, "the thing").acquire()
        except LockHeld as exc:
            refused.append(exc)

    t = threading.Thread(target=other)
    t.start()
    t.join(10)
    assert refused and "in this process" in str(refused[0])
    inner.release()
    assert flock_holders(path) == [os.getpid()]  # still held after the inner release
    outer.release()
    assert flock_holders(path) == []


def test_a_symlink_and_its_target_are_one_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "run").mkdir(mode=0o700)
    dev = tmp_path / "ttyFAKE0"
    dev.touch()
    link = tmp_path / "by-id-link"
    link.symlink_to(dev)
    assert port_lock(str(link)).path == port_lock(str(dev)).path
    assert port_lock("socket://127.0.0.1:7000").path != port_lock(str(dev)).path
    with port_lock(str(dev)):
        proc = subprocess.run(
            [sys.executable, "-c", "import sys\nfrom nrfprov.locks import port_lock\n"
             "try:\n    port_lock(sys.argv[1]).acquire()\nexcept Exception as e:\n    print(e); sys.exit(2)",
             str(link)],
            capture_output=True, text=True, timeout=60, env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path / "run")},
        )
    assert proc.returncode == 2 and f"process {os.getpid()}" in proc.stdout


def test_the_journal_folder_lock_lives_in_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    with folder_lock(folder, "journal folder") as lock:
        assert lock.path.parent == folder and (folder.stat().st_mode & 0o777) == 0o700
        assert (lock.path.stat().st_mode & 0o777) == 0o600
