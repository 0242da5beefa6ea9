"""`nrfprov config show` through the installed console script, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parents[1] / "config" / "data"
NRFPROV = Path(sys.executable).parent / "nrfprov"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(NRFPROV), *args], capture_output=True, text=True, timeout=60)


def test_version_and_help() -> None:
    r = run("--version")
    assert r.returncode == 0 and r.stdout.startswith("nrfprov ")
    r = run("--help")
    assert r.returncode == 0 and "exit codes" in r.stdout and "config" in r.stdout
    r = run()
    assert r.returncode == 2 and "usage" in r.stderr


def test_show_json_selects_native_with_the_overlay() -> None:
    overlay = str(DATA / "overlay-native_tls.conf")
    r = run("config", "show", "--conf", str(DATA / "prj.conf"), "--overlay", overlay, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["tls_backend"] == "native" and data["claim_sec_tag"] == 43
    for key in ("provisioned_sec_tag", "broker_host", "broker_port", "client_id", "flow", "payload_format"):
        assert key in data
    r = run("config", "show", "--conf", str(DATA / "prj.conf"), "--json")
    assert json.loads(r.stdout)["tls_backend"] == "offload"


def test_show_set_override_and_verbose_lists_ignored_symbols() -> None:
    r = run("-v", "config", "show", "--conf", str(DATA / "prj.conf"), "--set", "CONFIG_NRFPROV_FLOW=combined", "--json")
    data = json.loads(r.stdout)
    assert data["flow"] == "combined"
    assert any("CONFIG_LTE_LINK_CONTROL=y" in line for line in data["ignored"])
    r = run("-v", "config", "show", "--conf", str(DATA / "prj.conf"))
    assert r.returncode == 0 and "ignored firmware-only symbols" in r.stdout


def test_malformed_line_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "prj.conf"
    bad.write_text("CONFIG_AWS_IOT_SEC_TAG=43\nCONFIG_FOO = y\n")
    r = run("config", "show", "--conf", str(bad), "--json")
    assert r.returncode == 2
    assert f"{bad}:2" in r.stderr and "CONFIG_FOO = y" in r.stderr and r.stdout == ""


def test_unknown_own_symbol_exits_2_with_suggestion() -> None:
    r = run("config", "show", "--set", "CONFIG_NRFPROV_FLOWW=split")
    assert r.returncode == 2 and "did you mean CONFIG_NRFPROV_FLOW" in r.stderr
