"""The error contract: every exit status nrfprov can end with is listed once and shown by --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nrfprov import errors
from nrfprov.cli import main
from nrfprov.errors import EXIT_CODES, NrfprovError


def _all_error_classes() -> list[type[NrfprovError]]:
    out, todo = [], [NrfprovError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def test_every_error_class_exits_with_a_listed_code() -> None:
    classes = _all_error_classes()
    assert len(classes) > 20  # the walk sees the tree (provisioning's classes are imported by then too)
    unlisted = {c.__name__: c.exit_code for c in classes if c.exit_code not in EXIT_CODES}
    assert not unlisted
    # besides the classes: 0 ok, 2 argparse, 130 Ctrl-C, 1 demo rows
    assert {0, 1, 2, errors.EXIT_INTERRUPTED} <= EXIT_CODES.keys()


def test_a_disk_failure_is_not_a_failed_credential_write() -> None:
    assert errors.JournalError.exit_code != errors.CredentialError.exit_code
    assert not issubclass(errors.JournalError, errors.CredentialError)


def test_local_misuse_is_not_a_modem_failure() -> None:
    assert not issubclass(errors.LocalProtocolError, errors.ModemError)
    assert errors.LocalProtocolError.exit_code not in (errors.ModemError.exit_code, errors.AtProtocolError.exit_code)


def test_help_lists_every_code() -> None:
    out = subprocess.run([sys.executable, "-m", "nrfprov", "--help"], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    for code, meaning in EXIT_CODES.items():
        assert f"{code:>3}  {meaning}" in out, code


def test_ctrl_c_and_argparse_codes_are_what_the_list_says(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("nrfprov.cli.config._show", interrupted)
    assert main(["config", "show"]) == errors.EXIT_INTERRUPTED
    with pytest.raises(SystemExit) as info:
        main(["config", "show", "--no-such-flag"])
    assert info.value.code == 2
    assert main([]) == 2  # no command: usage on stderr
    assert "usage" in capsys.readouterr().err
