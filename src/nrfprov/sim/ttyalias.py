"""Make the simulator's pty discoverable by tools that enumerate serial ports (e.g. nrfcredstore).

nrfcredstore resolves its port argument with ``os.path.realpath`` and then insists on finding it
in ``serial.tools.list_ports.comports()``, which on Linux globs ``/dev/ttyACM*`` & co. and never
lists ``/dev/pts/N``. A symlink does not help (realpath goes back to /dev/pts/N) and a copied
device node cannot open a devpts slave (EIO, measured). A bind mount of the slave onto an empty
file named ``/dev/ttyACM…`` does work: the path is real, globbed, and opens the same pty.
Needs root (CAP_SYS_ADMIN). Linux only.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType

from nrfprov.errors import UsageError


class TtyAlias:
    """Context manager: bind-mount ``pty`` at ``alias`` (must be /dev/ttyACM* or similar)."""

    def __init__(self, pty: Path, alias: Path) -> None:
        self.pty = pty
        self.alias = alias
        self._mounted = False
        self._created = False

    def __enter__(self) -> Path:
        if self.alias.exists():
            raise UsageError(f"{self.alias} already exists", hint="pick another --tty-alias path")
        self.alias.touch(mode=0o600)
        self._created = True
        proc = subprocess.run(
            ["mount", "--bind", str(self.pty), str(self.alias)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            self._cleanup()
            raise UsageError(
                f"cannot bind-mount {self.pty} at {self.alias}: {proc.stderr.strip()}",
                hint="run as root, or give the tool the pty path directly",
            )
        self._mounted = True
        return self.alias

    def _cleanup(self) -> None:
        if self._mounted:
            subprocess.run(["umount", str(self.alias)], capture_output=True, check=False)
            self._mounted = False
        if self._created:
            self.alias.unlink(missing_ok=True)
            self._created = False

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._cleanup()
