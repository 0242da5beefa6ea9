"""The one state-folder helper: XDG Base Directory rules, never a path relative to the working directory."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from nrfprov.cli.options import state_dir
from nrfprov.errors import UsageError
from nrfprov.paths import default_state_dir, state_home


def test_xdg_state_home_when_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir("sim") == tmp_path / "xdg" / "nrfprov" / "sim"


@pytest.mark.parametrize("value", ["", "relative/state", "."])
def test_empty_or_relative_xdg_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str) -> None:
    # The spec: unset or empty means $HOME/.local/state; a relative value is invalid and ignored.
    monkeypatch.setenv("XDG_STATE_HOME", value)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state_home() == tmp_path / ".local" / "state"
    assert default_state_dir("cloud") == tmp_path / ".local" / "state" / "nrfprov" / "cloud"
    assert default_state_dir("cloud").is_absolute()


def test_no_absolute_home_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "")
    monkeypatch.setenv("HOME", "not/absolute")
    with pytest.raises(UsageError, match="--state DIR"):
        state_home()


@pytest.mark.parametrize("parts", [("sim",), ("cloud",), ("356938035643809",)])
def test_every_command_default_goes_through_the_helper(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       parts: tuple[str, ...]) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state_dir(argparse.Namespace(state=None), *parts) == tmp_path / ".local/state/nrfprov" / Path(*parts)
    assert state_dir(argparse.Namespace(state=Path("here")), *parts) == Path("here")  # given: used as is
