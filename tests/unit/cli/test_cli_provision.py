"""``nrfprov provision`` refuses what cannot work with exit 2, before it opens the port."""

from __future__ import annotations

import pytest

from nrfprov.cli import main

BASE = ["provision", "--port", "/nonexistent/tty-never-opened", "--set", "CONFIG_AWS_IOT_BROKER_HOST_NAME=h"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--flow", "combined"], "RegisterThing"),
        (["--flow", "csr"], "RegisterThing"),
        (["--set", "CONFIG_NRFPROV_TLS_BACKEND=offload"], "CONFIG_AWS_IOT_SEC_TAG"),
        (["--set", "CONFIG_AWS_IOT_SEC_TAG=50"], "destroy the claim"),
    ],
)
def test_refusals_exit_2_without_touching_the_port(capsys: pytest.CaptureFixture[str], extra: list[str],
                                                    needle: str) -> None:
    assert main([*BASE, *extra]) == 2
    assert needle in capsys.readouterr().err


def test_no_endpoint_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["provision", "--port", "/nonexistent/tty", "--set", "CONFIG_AWS_IOT_SEC_TAG=43"]) == 2
    assert "CONFIG_AWS_IOT_BROKER_HOST_NAME" in capsys.readouterr().err


def test_a_good_combination_gets_as_far_as_the_port(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main([*BASE, "--set", "CONFIG_AWS_IOT_SEC_TAG=43"])
    assert rc == 3 and "/nonexistent/tty-never-opened" in capsys.readouterr().err  # ModemLinkError


@pytest.mark.parametrize("command", ["provision", "demo"])
def test_help_teaches(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out.lower() or "expected_failure" in out
