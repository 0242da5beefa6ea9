"""One spelling of each domain name: configuration, command line and the demo all take it from nrfprov.names."""

from __future__ import annotations

import argparse

import pytest

from nrfprov import names
from nrfprov.cli import build_parser
from nrfprov.cli.demo import combinations
from nrfprov.config import load_settings
from nrfprov.errors import ConfigError


def _choices(parser: argparse.ArgumentParser, path: list[str], dest: str) -> tuple[str, ...]:
    for step in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[step]
    action = next(a for a in parser._actions if a.dest == dest)
    assert action.choices is not None
    return tuple(action.choices)


@pytest.mark.parametrize(
    ("path", "dest", "expected"),
    [
        (["provision"], "flow", names.FLOWS),
        (["provision"], "payload_format", names.FORMATS),
        (["demo"], "flow", names.FLOWS),
        (["tls-check"], "backend", names.BACKENDS),
        (["sim"], "dialect", names.DIALECTS),
    ],
)
def test_cli_choices_are_the_domain_names(path: list[str], dest: str, expected: tuple[str, ...]) -> None:
    assert _choices(build_parser(), path, dest) == expected


@pytest.mark.parametrize(
    ("symbol", "good"),
    [
        ("CONFIG_NRFPROV_FLOW", names.FLOWS),
        ("CONFIG_NRFPROV_PAYLOAD_FORMAT", names.FORMATS),
        ("CONFIG_NRFPROV_TLS_BACKEND", names.BACKENDS),
        ("CONFIG_NRFPROV_MODEM_DIALECT", names.DIALECT_CHOICES),
    ],
)
def test_configuration_accepts_exactly_the_domain_names(symbol: str, good: tuple[str, ...]) -> None:
    for value in good:
        load_settings(overrides=[f"{symbol}={value}"])
    with pytest.raises(ConfigError, match=", ".join(repr(v) for v in good)):
        load_settings(overrides=[f"{symbol}=nonsense"])


def test_demo_rows_cover_the_domain_names() -> None:
    rows = combinations()
    assert {c.flow for c in rows} == set(names.FLOWS)
    assert {c.backend for c in rows} == set(names.BACKENDS)
    assert {c.dialect for c in rows} == set(names.DIALECTS)
    assert {c.payload_format for c in rows} - {"-"} == set(names.FORMATS)
