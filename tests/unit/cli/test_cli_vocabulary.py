"""One CLI vocabulary: --port is a serial port, TAG is positional, --flow names a flow, every
argument explains itself, and the old spellings still parse (hidden from --help)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from nrfprov.cli import build_parser


def _parsers(parser: argparse.ArgumentParser, path: str = "nrfprov") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_command_and_argument_has_help() -> None:
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {c.dest}" for c in action._choices_actions if not c.help]
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing


def test_port_is_always_a_serial_port() -> None:
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if "--port" in action.option_strings and action.help != argparse.SUPPRESS:
                assert action.dest == "port" and "pyserial URL" in (action.help or ""), path


@pytest.mark.parametrize(
    ("old", "new", "dest", "value"),
    [
        (["cloud", "up", "--port", "8883"], ["cloud", "up", "--broker-port", "8883"], "broker_port", 8883),
        (["demo", "--only", "csr"], ["demo", "--flow", "csr"], "flow", "csr"),
        (["creds", "list", "--port", "/dev/x", "--tag", "43"], ["creds", "list", "--port", "/dev/x", "43"],
         None, 43),
    ],
)
def test_old_spellings_still_parse(old: list[str], new: list[str], dest: str | None, value: object) -> None:
    parser = build_parser()
    a, b = parser.parse_args(old), parser.parse_args(new)
    if dest is None:  # creds list: --tag lands beside the positional, the handler merges them
        assert (a.tag_option, b.tag) == (value, value)
    else:
        assert getattr(a, dest) == getattr(b, dest) == value


@pytest.mark.parametrize("command", [["cloud", "up"], ["demo"], ["creds", "list"]])
def test_old_spellings_are_hidden(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    out = capsys.readouterr().out
    assert "--only" not in out and "--tag" not in out
    assert ("--port" not in out) if command == ["cloud", "up"] else True
