"""Building the broker plugin: cached by content, clear errors when headers or compiler are missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from nrfprov.cloud import plugin
from nrfprov.errors import ConfigError

pytestmark = pytest.mark.integration


def test_built_once_per_source_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(plugin.ENV_PREBUILT, raising=False)
    built = plugin.ensure_plugin()
    assert built.is_file() and built.is_relative_to(tmp_path / "nrfprov" / "broker-plugin")
    stamp = built.stat().st_mtime_ns
    assert plugin.ensure_plugin() == built and built.stat().st_mtime_ns == stamp  # no second compile
    assert [p.name for p in built.parent.iterdir()] == [plugin.LIBRARY_NAME]  # no temporary left behind


def test_missing_headers_name_the_packages(tmp_path: Path) -> None:
    src = tmp_path / "p.c"
    src.write_text("#include <mosquitto_broker.h>\n")
    # An empty sysroot hides /usr/include, as on a machine without mosquitto-dev.
    with pytest.raises(ConfigError) as info:
        plugin.compile_plugin(src, tmp_path / "out" / "p.so", ["cc", f"--sysroot={tmp_path / 'empty'}"])
    assert "missing mosquitto_broker.h" in str(info.value)
    assert "apt-get install mosquitto-dev libmosquitto-dev libssl-dev" in str(info.value)
    assert list((tmp_path / "out").iterdir()) == []


def test_no_compiler_and_a_bad_prebuilt_path_are_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(plugin.ENV_PREBUILT, raising=False)
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(ConfigError, match="no C compiler") as info:
        plugin.ensure_plugin()
    assert info.value.exit_code == 2
    monkeypatch.setenv(plugin.ENV_PREBUILT, str(tmp_path / "missing.so"))
    with pytest.raises(ConfigError, match="does not name a file"):
        plugin.ensure_plugin()
