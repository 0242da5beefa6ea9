"""Run the real ``nrfprov`` console script (the venv's entry point) as a user would, for CLI tests."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

NRFPROV = Path(sys.executable).parent / "nrfprov"
#: Address-space cap for a child: a read that never ends fails with MemoryError in seconds instead of
#: taking the shared machine's memory first.
MEMORY_CAP = 1536 * 1024 * 1024


def _cap_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def start(*args: str, **kw: Any) -> subprocess.Popen[str]:
    """``nrfprov ARGS`` in the background, stdout and stderr piped (text)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.Popen([str(NRFPROV), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(), preexec_fn=_cap_memory, **kw)


def run(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    """``nrfprov ARGS`` to the end (``timeout`` is a hang detector, not a speed check)."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([str(NRFPROV), *args], capture_output=True, text=True, timeout=timeout, env=env(),
                          preexec_fn=_cap_memory, **kw)


def wait_for_line(proc: subprocess.Popen[str], needle: str, stream: str = "stderr") -> list[str]:
    """Read ``proc``'s stream line by line until one contains ``needle``; the lines read so far."""
    pipe = proc.stderr if stream == "stderr" else proc.stdout
    assert pipe is not None
    seen: list[str] = []
    for line in pipe:
        seen.append(line.rstrip("\n"))
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never appeared; {stream} was: {seen[-20:]}")
