"""A reader that closes stdout early (``nrfprov ports | head -1``) ends nrfprov quietly with 141."""

from __future__ import annotations

import subprocess
import sys


def test_closed_stdout_ends_quietly_with_141() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "nrfprov", "config", "show"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before nrfprov writes its first line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert "Traceback" not in err
