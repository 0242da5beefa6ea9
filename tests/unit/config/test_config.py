"""Kconfig fragment parsing, merging and Settings: fed whole, line by line, and with garbage."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nrfprov.config import Assignment, load_settings, merge, parse_fragment, parse_override, settings_from
from nrfprov.errors import ConfigError

DATA = Path(__file__).parent / "data"
PRJ = DATA / "prj.conf"
OVERLAY = DATA / "overlay-native_tls.conf"


# --- syntax -------------------------------------------------------------------------------------


def test_every_value_form() -> None:
    text = (
        "CONFIG_A=y\nCONFIG_B=n\n# CONFIG_C is not set\nCONFIG_D=42\nCONFIG_E=-7\nCONFIG_F=0x2A\n"
        'CONFIG_G="plain"\nCONFIG_H="say \\"hi\\" \\\\ back"\nCONFIG_I=""\n'
    )
    got = {a.name: a.value for a in parse_fragment(text, "t.conf")}
    assert got == {
        "CONFIG_A": True, "CONFIG_B": False, "CONFIG_C": False, "CONFIG_D": 42, "CONFIG_E": -7,
        "CONFIG_F": 42, "CONFIG_G": "plain", "CONFIG_H": 'say "hi" \\ back', "CONFIG_I": "",
    }


def test_comments_blank_lines_crlf_and_trailing_space_are_ignored() -> None:
    text = "\r\n# a comment\r\n   \r\nCONFIG_A=y  \r\n\t# indented comment\n"
    assert [(a.name, a.value, a.line_no) for a in parse_fragment(text)] == [("CONFIG_A", True, 4)]


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("CONFIG_A = y", "malformed line"),
        ("CONFIG_A", "malformed line"),
        ("A=y", "malformed line"),
        ("CONFIG_A-B=y", "malformed line"),
        ("CONFIG_A=yes", "malformed value"),
        ("CONFIG_A=1.5", "malformed value"),
        ("CONFIG_A=0xZZ", "malformed value"),
        ('CONFIG_A="open', "unterminated string"),
        ('CONFIG_A="x\\', "unterminated string"),
        ('CONFIG_A="x" trailing', "text after the closing quote"),
        ("CONFIG_A=", "malformed value"),
    ],
)
def test_malformed_lines_name_file_line_and_text(line: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_fragment(f"CONFIG_OK=y\n\n{line}\n", "board/prj.conf")
    err = info.value
    assert err.path == "board/prj.conf" and err.line_no == 3 and err.line == line.strip()
    assert fragment in str(err) and "board/prj.conf:3" in str(err)
    assert err.exit_code == 2


def test_fed_whole_equals_fed_line_by_line() -> None:
    text = PRJ.read_text() + OVERLAY.read_text()
    whole = [(a.name, a.value) for a in parse_fragment(text)]
    by_line = [(a.name, a.value) for line in text.splitlines() for a in parse_fragment(line)]
    assert whole == by_line and len(whole) > 20


def test_trailing_line_without_newline_is_read() -> None:
    assert parse_fragment("CONFIG_A=y\nCONFIG_B=3")[-1].value == 3


_names = st.from_regex(r"CONFIG_[A-Z][A-Z0-9_]{0,20}", fullmatch=True)
_values = st.one_of(st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=40))


def _render(value: bool | int | str) -> str:
    if isinstance(value, bool):
        return "y" if value else "n"
    if isinstance(value, int):
        return str(value)
    # Kconfig's writer: escape backslash first, then quotes.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@given(st.lists(st.tuples(_names, _values), max_size=20))
def test_round_trip_of_rendered_assignments(pairs: list[tuple[str, bool | int | str]]) -> None:
    # A Kconfig string cannot hold a line break; str.splitlines() also splits on these.
    breaks = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
    safe = [(n, v) for n, v in pairs if not (isinstance(v, str) and any(c in v for c in breaks))]
    text = "\n".join(f"{n}={_render(v)}" for n, v in safe)
    assert [(a.name, a.value) for a in parse_fragment(text)] == safe


@given(st.text(max_size=300))
def test_garbage_gives_assignments_or_config_error(text: str) -> None:
    try:
        result = parse_fragment(text, "fuzz.conf")
    except ConfigError as exc:
        assert exc.path == "fuzz.conf" and exc.line_no is not None
    else:
        assert all(isinstance(a, Assignment) for a in result)


@given(st.binary(max_size=200))
def test_garbage_bytes_decoded_leniently(data: bytes) -> None:
    try:
        parse_fragment(data.decode("latin-1"))
    except ConfigError:
        pass


# --- merge and settings -------------------------------------------------------------------------


def test_last_assignment_wins_across_files_and_overrides(tmp_path: Path) -> None:
    a = tmp_path / "a.conf"
    b = tmp_path / "b.conf"
    a.write_text("CONFIG_AWS_IOT_SEC_TAG=1\nCONFIG_AWS_IOT_PORT=8883\n")
    b.write_text("CONFIG_AWS_IOT_SEC_TAG=2\n")
    s = load_settings(a, [b])
    assert s.claim_sec_tag == 2 and s.broker_port == 8883
    assert s.origins["claim_sec_tag"] == f"{b}:1: CONFIG_AWS_IOT_SEC_TAG=2"
    s = load_settings(a, [b], ["CONFIG_AWS_IOT_SEC_TAG=3"])
    assert s.claim_sec_tag == 3 and s.origins["claim_sec_tag"].startswith("--set")


def test_legacy_and_v29_names_resolve_by_position(tmp_path: Path) -> None:
    a = tmp_path / "a.conf"
    a.write_text("CONFIG_MQTT_HELPER_SEC_TAG=201\nCONFIG_AWS_IOT_SEC_TAG=43\n")
    assert load_settings(a).claim_sec_tag == 43
    a.write_text("CONFIG_AWS_IOT_SEC_TAG=43\nCONFIG_MQTT_HELPER_SEC_TAG=201\n")
    assert load_settings(a).claim_sec_tag == 201
    # Reassigning the earlier symbol later moves it to the end: it wins again.
    b = tmp_path / "b.conf"
    b.write_text("CONFIG_AWS_IOT_SEC_TAG=44\n")
    assert load_settings(a, [b]).claim_sec_tag == 44


def test_mqtt_helper_minus_one_means_unset(tmp_path: Path) -> None:
    a = tmp_path / "a.conf"
    a.write_text("CONFIG_MQTT_HELPER_SEC_TAG=-1\n")
    assert load_settings(a).claim_sec_tag is None


def test_sample_fragments_select_backends() -> None:
    plain = load_settings(PRJ)
    assert plain.tls_backend == "offload" and plain.claim_sec_tag == 43
    assert plain.tls_backend_reason.startswith("default")
    native = load_settings(PRJ, [OVERLAY])
    assert native.tls_backend == "native"
    assert native.tls_backend_reason == f"{OVERLAY}:2: CONFIG_MBEDTLS_TLS_LIBRARY=y"
    assert native.mbedtls_in_content_len == 5120 and native.mqtt_payload_buffer_len == 8096
    assert native.keepalive == 1200 and native.client_id == "nrf-352656100000000"
    assert any("CONFIG_LTE_LINK_CONTROL=y" in line for line in native.ignored)


def test_v29_native_tls_symbol_and_explicit_backend_precedence(tmp_path: Path) -> None:
    a = tmp_path / "a.conf"
    a.write_text("CONFIG_MQTT_HELPER_NATIVE_TLS=y\n")
    assert load_settings(a).tls_backend == "native"
    s = load_settings(a, overrides=['CONFIG_NRFPROV_TLS_BACKEND="offload"'])
    assert s.tls_backend == "offload" and "CONFIG_NRFPROV_TLS_BACKEND" in s.tls_backend_reason
    assert load_settings(overrides=["CONFIG_NRFPROV_TLS_BACKEND=host"]).tls_backend == "host"
    a.write_text("CONFIG_MBEDTLS_TLS_LIBRARY=n\n")
    assert load_settings(a).tls_backend == "offload"


def test_unknown_own_symbol_names_closest(tmp_path: Path) -> None:
    a = tmp_path / "a.conf"
    a.write_text("CONFIG_NRFPROV_PROVISONED_SEC_TAG=50\n")
    with pytest.raises(ConfigError, match="did you mean CONFIG_NRFPROV_PROVISIONED_SEC_TAG") as info:
        load_settings(a)
    assert info.value.line_no == 1


@pytest.mark.parametrize(
    "line, message",
    [
        ("CONFIG_AWS_IOT_SEC_TAG=y", "takes an integer"),
        ('CONFIG_AWS_IOT_SEC_TAG="43"', "takes an integer"),
        ("CONFIG_AWS_IOT_BROKER_HOST_NAME=7", "takes a \"quoted string\""),
        ("CONFIG_NRFPROV_MIRROR_DEVICE_LIMITS=1", "takes y or n"),
        ('CONFIG_NRFPROV_FLOW="both"', "must be one of"),
        ("CONFIG_AWS_IOT_PORT=0", "must be between 1 and 65535"),
        ("CONFIG_AWS_IOT_SEC_TAG=-2", "must be between"),
    ],
)
def test_wrong_types_and_ranges(tmp_path: Path, line: str, message: str) -> None:
    a = tmp_path / "a.conf"
    a.write_text(f"# header\n{line}\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(a)
    assert info.value.line_no == 2


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_settings(tmp_path / "absent.conf")
    bad = tmp_path / "bin.conf"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(bad)


def test_override_forms() -> None:
    assert parse_override("CONFIG_NRFPROV_FLOW=combined").value == "combined"  # quotes optional
    assert parse_override('CONFIG_NRFPROV_FLOW="csr"').value == "csr"
    assert parse_override("CONFIG_AWS_IOT_SEC_TAG=0x10").value == 16
    with pytest.raises(ConfigError, match="--set expects"):
        parse_override("FLOW=combined")


def test_template_parameters() -> None:
    s = settings_from(merge([[parse_override("CONFIG_NRFPROV_TEMPLATE_PARAMETERS=SerialNumber={imei}, Site = lab")]]))
    assert s.parameters() == {"SerialNumber": "{imei}", "Site": "lab"}
    s = settings_from(merge([[parse_override("CONFIG_NRFPROV_TEMPLATE_PARAMETERS=novalue")]]))
    with pytest.raises(ConfigError, match="Key=Value"):
        s.parameters()


def test_public_dict_has_the_documented_keys() -> None:
    data = load_settings(PRJ).public_dict()
    for key in ("tls_backend", "claim_sec_tag", "provisioned_sec_tag", "broker_host", "broker_port",
                "client_id", "flow", "payload_format", "tls_backend_reason"):
        assert key in data


def test_max_fragment_length_is_reported_as_ignored_not_parsed_into_a_setting() -> None:
    # Nothing in nrfprov honours it (the native bridge never negotiates MFL): saying so beats a
    # setting that `config show` would print and no code would read.
    s = load_settings(overrides=["CONFIG_NET_SOCKETS_TLS_SET_MAX_FRAGMENT_LENGTH=y"])
    assert "max_fragment_length" not in s.public_dict()
    assert s.ignored == ("--set: CONFIG_NET_SOCKETS_TLS_SET_MAX_FRAGMENT_LENGTH=y",)


def test_the_default_client_id_is_per_device_and_imei_expands() -> None:
    s = load_settings()
    assert s.client_id == "nrf-{imei}" and s.device_client_id("356938035643809") == "nrf-356938035643809"
    named = load_settings(overrides=["CONFIG_AWS_IOT_CLIENT_ID_STATIC=lab-{imei}"])
    assert named.device_client_id("356938035643809") == "lab-356938035643809"
    fixed = load_settings(overrides=["CONFIG_AWS_IOT_CLIENT_ID_STATIC=my-thing"])
    assert fixed.device_client_id("356938035643809") == "my-thing"  # named: the user's choice, unchanged
