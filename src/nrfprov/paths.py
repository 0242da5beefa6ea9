"""Where nrfprov keeps state on this computer: one helper, the XDG Base Directory rules.

The XDG Base Directory Specification (freedesktop.org, version 0.8) says ``$XDG_STATE_HOME`` holds
state that should persist between runs, defaults to ``$HOME/.local/state`` when it is "either not
set or empty", and that a relative path in any of these variables "should be considered invalid
and ignored". Every default state folder of every command comes from :func:`default_state_dir`,
so they all follow the same rules and none of them is ever relative to the working directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from nrfprov.errors import UsageError

APP = "nrfprov"


def state_home() -> Path:
    """``$XDG_STATE_HOME`` if it is an absolute path, else ``$HOME/.local/state`` (absolute)."""
    xdg = os.environ.get("XDG_STATE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    home = os.path.expanduser("~")
    if not os.path.isabs(home):  # HOME empty or relative and no passwd entry: no safe default
        raise UsageError(
            "cannot choose a state folder: neither XDG_STATE_HOME nor HOME is an absolute path",
            hint="pass --state DIR, or set XDG_STATE_HOME to an absolute path",
        )
    return Path(home) / ".local" / "state"


def default_state_dir(*parts: str) -> Path:
    """``<state home>/nrfprov/<parts...>``, e.g. ``default_state_dir("sim")``."""
    return state_home().joinpath(APP, *parts)


def describe_default(*parts: str) -> str:
    """The default as help text shows it, without touching the environment at import time."""
    tail = "/".join((APP, *parts))
    return f"$XDG_STATE_HOME/{tail}, or ~/.local/state/{tail}"


#: Amazon Root CA 1 and 3, shipped inside the package (``nrfprov/data``) so a pip-installed nrfprov
#: finds them without a source checkout; in the order they are written to a device.
BUILTIN_CA_FILES = ("AmazonRootCA1.pem", "AmazonRootCA3.pem")


def builtin_ca_paths() -> tuple[Path, ...]:
    """The package's own copies of Amazon Root CA 1 and 3 (installed as package data)."""
    from importlib import resources

    data = resources.files(APP) / "data"
    return tuple(Path(str(data / name)) for name in BUILTIN_CA_FILES)

