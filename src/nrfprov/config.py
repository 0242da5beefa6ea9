"""Zephyr/NCS Kconfig fragments (``prj.conf`` + overlays) → typed :class:`Settings`.

nrfprov reads the same files a firmware build reads, with the same rules, so one set of fragments
describes both the device and the host that provisions it:

- Syntax [zephyr ``doc/build/kconfig/setting.rst``; Kconfiglib]: one ``CONFIG_NAME=value`` per line,
  no spaces around ``=``; ``y``/``n``; ``"strings"`` with ``\\`` escaping the next character; decimal
  or ``0x`` hex integers; ``# CONFIG_X is not set`` means ``n``; other ``#`` lines are comments.
  Kconfiglib merely warns on a malformed line, but Zephyr turns warnings into build failures, and a
  silently ignored line in a provisioning tool is a mis-provisioned device: we refuse it.
- Merge [zephyr ``scripts/kconfig/kconfig.py``]: fragments in order, the last assignment wins, then
  ``--set`` overrides (like ``-DCONFIG_X=`` on the CMake line after ``EXTRA_CONF_FILE``).
- A real ``prj.conf`` is full of firmware-only symbols; those are kept in ``Settings.ignored`` and
  otherwise ignored. An unknown ``CONFIG_NRFPROV_*`` symbol is an error (it is ours, so it is a typo).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nrfprov.errors import ConfigError, InputFileError
from nrfprov.names import BACKENDS, DIALECT_CHOICES, FLOWS, FORMATS, Backend, DialectChoice, Flow, PayloadFormat

Value = bool | int | str

_NAME_RE = re.compile(r"CONFIG_[A-Za-z0-9_]+")
_NOT_SET_RE = re.compile(r"#\s*(CONFIG_[A-Za-z0-9_]+) is not set\s*")
_INT_RE = re.compile(r"-?[0-9]+")
_HEX_RE = re.compile(r"0[xX][0-9a-fA-F]+")
OUR_PREFIX = "CONFIG_NRFPROV_"
#: Expands to the modem's IMEI in the client id and in template parameter values.
IMEI_PLACEHOLDER = "{imei}"
#: The client id when ``CONFIG_AWS_IOT_CLIENT_ID_STATIC`` is not set: one per device (``Settings.device_client_id``).
DEFAULT_CLIENT_ID = "nrf-" + IMEI_PLACEHOLDER


@dataclass(frozen=True)
class Assignment:
    """One ``CONFIG_X=value`` line, with where it came from (for errors and "decided by")."""

    name: str
    value: Value
    path: str
    line_no: int
    line: str

    @property
    def origin(self) -> str:
        where = f"{self.path}:{self.line_no}" if self.line_no else self.path
        return f"{where}: {self.line}"


def parse_value(text: str, *, path: str = "<value>", line_no: int = 0, line: str = "") -> Value:
    """Parse the right-hand side of an assignment (``y``, ``n``, ``"str"``, ``42``, ``0x2A``)."""
    if text in ("y", "n"):
        return text == "y"
    if text.startswith('"'):
        return _parse_string(text, path, line_no, line or text)
    if _HEX_RE.fullmatch(text):
        return int(text, 16)
    if _INT_RE.fullmatch(text):
        return int(text, 10)
    raise ConfigError(
        "malformed value (expected y, n, a \"quoted string\" or an integer)",
        path=path, line_no=line_no, line=line or text,
    )


def _parse_string(text: str, path: str, line_no: int, line: str) -> str:
    out: list[str] = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                break
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            if text[i + 1 :].strip():
                raise ConfigError("text after the closing quote", path=path, line_no=line_no, line=line)
            return "".join(out)
        out.append(ch)
        i += 1
    raise ConfigError("unterminated string", path=path, line_no=line_no, line=line)


def parse_fragment(text: str, path: str = "<fragment>") -> list[Assignment]:
    """Parse one fragment; raise ``ConfigError`` naming ``path:line`` for the first bad line."""
    result: list[Assignment] = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            m = _NOT_SET_RE.fullmatch(stripped)
            if m:
                result.append(Assignment(m.group(1), False, path, line_no, stripped))
            continue
        name, sep, rhs = stripped.partition("=")
        if not sep or not _NAME_RE.fullmatch(name):
            raise ConfigError(
                "malformed line (expected CONFIG_NAME=value with no spaces around '=')",
                path=path, line_no=line_no, line=stripped,
            )
        value = parse_value(rhs, path=path, line_no=line_no, line=stripped)
        result.append(Assignment(name, value, path, line_no, stripped))
    return result


def read_fragment(path: str | Path) -> list[Assignment]:
    """Read and parse one fragment: a regular file of at most FRAGMENT_LIMIT bytes (``nrfprov.files``)."""
    from nrfprov.files import FRAGMENT_LIMIT, read_text_bounded

    p = Path(path)
    try:
        text = read_text_bounded(p, FRAGMENT_LIMIT, "configuration file", encoding="utf-8")
    except InputFileError as exc:
        reason = "no such configuration file" if exc.reason == "no such file" else \
            f"cannot read configuration file: {exc.reason}"
        raise ConfigError(reason, path=str(p), hint=exc.hint) from exc
    return parse_fragment(text, str(p))


def parse_override(text: str) -> Assignment:
    """``--set CONFIG_X=VAL``; a bare string value may omit its quotes for shell convenience."""
    name, sep, rhs = text.partition("=")
    if not sep or not _NAME_RE.fullmatch(name):
        raise ConfigError("--set expects CONFIG_NAME=value", path="--set", line=text)
    spec = _SYMBOLS.get(name)
    if spec is None and name.startswith(OUR_PREFIX):
        raise _unknown_symbol(name, "--set", None)
    if spec is not None and spec.kind is str and not rhs.startswith('"'):
        return Assignment(name, rhs, "--set", 0, text)
    return Assignment(name, parse_value(rhs, path="--set", line=text), "--set", 0, text)


def _unknown_symbol(name: str, path: str, line_no: int | None) -> ConfigError:
    ours = [s for s in _SYMBOLS if s.startswith(OUR_PREFIX)]
    close = difflib.get_close_matches(name, ours, 1)
    hint = f"did you mean {close[0]}?" if close else "see README 'Configuration' for the known symbols"
    return ConfigError(f"unknown symbol {name}", path=path, line_no=line_no, hint=hint)


def merge(assignment_lists: Iterable[Iterable[Assignment]]) -> dict[str, Assignment]:
    """Kconfig merge: in order, the last assignment of a symbol wins.

    A reassigned symbol moves to the end, so iteration order is the order of the winning lines; this
    lets two symbols that feed one field (legacy and v2.9 NCS names) resolve by position too.
    """
    merged: dict[str, Assignment] = {}
    for assignments in assignment_lists:
        for a in assignments:
            merged.pop(a.name, None)
            merged[a.name] = a
    return merged


# --- the symbols nrfprov honours ----------------------------------------------------------------


@dataclass(frozen=True)
class _Symbol:
    field: str
    kind: type
    check: Callable[[Any], str | None] | None = None


def _choice(*options: str) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if v in options else f"must be one of {', '.join(repr(o) for o in options)}"

    return check


def _range(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be between {lo} and {hi}"

    return check


_SEC_TAG = _range(-1, 2147483647)  # %CMNG sec tag range [nrf91 AT ref]; -1 = unset (MQTT Helper)

# Later entries for the same field come from newer NCS versions; the merged assignment that appears
# last in the fragments decides (see _resolve).
_SYMBOLS: dict[str, _Symbol] = {
    "CONFIG_AWS_IOT_BROKER_HOST_NAME": _Symbol("broker_host", str),
    "CONFIG_AWS_IOT_PORT": _Symbol("broker_port", int, _range(1, 65535)),
    "CONFIG_MQTT_HELPER_PORT": _Symbol("broker_port", int, _range(1, 65535)),
    "CONFIG_AWS_IOT_CLIENT_ID_STATIC": _Symbol("client_id", str),
    "CONFIG_AWS_IOT_SEC_TAG": _Symbol("claim_sec_tag", int, _SEC_TAG),
    "CONFIG_MQTT_HELPER_SEC_TAG": _Symbol("claim_sec_tag", int, _SEC_TAG),
    "CONFIG_MQTT_KEEPALIVE": _Symbol("keepalive", int, _range(0, 65535)),
    "CONFIG_MQTT_CLEAN_SESSION": _Symbol("clean_session", bool),
    "CONFIG_MQTT_VERSION_5_0": _Symbol("mqtt_v5", bool),
    "CONFIG_MBEDTLS_SSL_IN_CONTENT_LEN": _Symbol("mbedtls_in_content_len", int, _range(512, 16384)),
    "CONFIG_MBEDTLS_SSL_OUT_CONTENT_LEN": _Symbol("mbedtls_out_content_len", int, _range(512, 16384)),
    "CONFIG_AWS_IOT_MQTT_PAYLOAD_BUFFER_LEN": _Symbol("mqtt_payload_buffer_len", int, _range(1, 1 << 20)),
    "CONFIG_MQTT_HELPER_PAYLOAD_BUFFER_LEN": _Symbol("mqtt_payload_buffer_len", int, _range(1, 1 << 20)),
    "CONFIG_MQTT_HELPER_CERTIFICATES_FOLDER": _Symbol("certs_dir", str),
    "CONFIG_MBEDTLS_TLS_LIBRARY": _Symbol("_ncs_native_tls", bool),
    "CONFIG_MQTT_HELPER_NATIVE_TLS": _Symbol("_ncs_native_tls", bool),
    # Ours.
    "CONFIG_NRFPROV_TLS_BACKEND": _Symbol("_tls_backend", str, _choice(*BACKENDS)),
    "CONFIG_NRFPROV_PROVISIONED_SEC_TAG": _Symbol("provisioned_sec_tag", int, _range(0, 2147483647)),
    "CONFIG_NRFPROV_FLOW": _Symbol("flow", str, _choice(*FLOWS)),
    "CONFIG_NRFPROV_PAYLOAD_FORMAT": _Symbol("payload_format", str, _choice(*FORMATS)),
    "CONFIG_NRFPROV_TEMPLATE_NAME": _Symbol("template_name", str),
    "CONFIG_NRFPROV_TEMPLATE_PARAMETERS": _Symbol("template_parameters", str),
    "CONFIG_NRFPROV_CERTS_DIR": _Symbol("certs_dir", str),
    "CONFIG_NRFPROV_CA_FILE": _Symbol("ca_file", str),
    "CONFIG_NRFPROV_MIRROR_DEVICE_LIMITS": _Symbol("mirror_device_limits", bool),
    "CONFIG_NRFPROV_MODEM_DIALECT": _Symbol("modem_dialect", str, _choice(*DIALECT_CHOICES)),
    "CONFIG_NRFPROV_SLM_TERMINATOR": _Symbol("slm_terminator", str),
    "CONFIG_NRFPROV_RESPONSE_TIMEOUT_S": _Symbol("response_timeout", int, _range(1, 3600)),
    "CONFIG_NRFPROV_LTE_TIMEOUT_S": _Symbol("lte_timeout", int, _range(1, 3600)),
    "CONFIG_NRFPROV_MQTT_PIPELINE": _Symbol("mqtt_pipeline", bool),
    "CONFIG_NRFPROV_PUBLISH_BEFORE_SUBACK": _Symbol("publish_before_suback", bool),
    "CONFIG_NRFPROV_DNS_REUSE_S": _Symbol("dns_reuse_s", int, _range(0, 3600)),
    "CONFIG_NRFPROV_CONNECT_TIMEOUT_S": _Symbol("connect_timeout", int, _range(1, 3600)),
    # nrfprov station: certificate and RegisterThing requests per second, and the burst (station/limiter.py).
    "CONFIG_NRFPROV_STATION_REQUEST_RATE": _Symbol("station_request_rate", int, _range(1, 1000)),
    "CONFIG_NRFPROV_STATION_REQUEST_BURST": _Symbol("station_request_burst", int, _range(1, 1000)),
}

#: Field -> the symbol named when no fragment set the field: the first (legacy NCS) name above.
_DEFAULT_SYMBOL: dict[str, str] = {}
for _name, _spec in _SYMBOLS.items():
    _DEFAULT_SYMBOL.setdefault(_spec.field, _name)


def default_symbol(field_name: str) -> str:
    """The symbol that names ``field_name`` when no fragment set it (``KeyError`` for no such field)."""
    return _DEFAULT_SYMBOL[field_name]


@dataclass(frozen=True)
class DeviceLimits:
    """Device-mirror limits (``CONFIG_NRFPROV_MIRROR_DEVICE_LIMITS=y``), each with the symbol that set it,
    so an error names the line the user has to change."""

    in_content_len: int
    in_content_symbol: str
    out_content_len: int
    payload_len: int
    payload_symbol: str


@dataclass(frozen=True)
class Settings:
    """What nrfprov needs to know, with NCS defaults where NCS has one."""

    broker_host: str = ""
    broker_port: int = 8883  # CONFIG_AWS_IOT_PORT default
    #: ``CONFIG_AWS_IOT_CLIENT_ID_STATIC``; unset, every device gets its own ``nrf-<IMEI>`` (see
    #: :meth:`device_client_id`). NCS's Kconfig default "my-thing" is not taken over: one static id for a
    #: fleet would make every device request, and AWS serve, the same split-flow identity.
    client_id: str = DEFAULT_CLIENT_ID
    claim_sec_tag: int | None = None  # no NCS default; Nordic's aws_iot_provisioning sample uses 43
    provisioned_sec_tag: int = 50  # Nordic's aws_iot_provisioning sample writes the new credentials to sec tag 50
    keepalive: int = 60  # Zephyr CONFIG_MQTT_KEEPALIVE default
    clean_session: bool = True
    mqtt_v5: bool = False
    tls_backend: Backend = "offload"
    mbedtls_in_content_len: int = 16384  # MBEDTLS_SSL_MAX_CONTENT_LEN default
    mbedtls_out_content_len: int = 16384
    mqtt_payload_buffer_len: int = 2304  # legacy CONFIG_AWS_IOT_MQTT_PAYLOAD_BUFFER_LEN default
    flow: Flow = "split"  # what Nordic's aws_iot_provisioning sample does
    payload_format: PayloadFormat = "json"
    template_name: str = ""  # empty: no RegisterThing
    template_parameters: str = ""  # "Key=Value,Key2=Value2"; {imei} and {client_id} expand at run time
    certs_dir: str = "certs"  # CONFIG_MQTT_HELPER_CERTIFICATES_FOLDER default
    ca_file: str = ""  # empty: Amazon Root CA 1 + 3 from certs/
    mirror_device_limits: bool = False
    modem_dialect: DialectChoice = "auto"
    slm_terminator: str = "+++"  # CONFIG_SLM_DATAMODE_TERMINATOR default
    response_timeout: int = 60  # the workaround's device script waits 60 s for both parts
    lte_timeout: int = 300
    # Round trips on the air (docs/provisioning.md, "Round trips"): MQTT packets right behind CONNECT
    # (MQTT 3.1.1 / 5.0 §3.1.4 allow it); the request right behind its SUBSCRIBE (off: AWS documents
    # subscribe-before-publish); the broker's address looked up once and reused for this many seconds.
    mqtt_pipeline: bool = True
    publish_before_suback: bool = False
    dns_reuse_s: int = 60
    #: Seconds for one broker connection: TCP or modem socket connect, TLS handshake and MQTT CONNACK.
    #: A broker that accepts TCP and never speaks TLS fails after this. 90 s covers a handshake over
    #: a 115200-baud UART on NB-IoT (RTT 1.6 s, 26 kbit/s down: the simulator's nb-iot profile).
    connect_timeout: int = 90
    #: ``nrfprov station``: certificate requests (and, apart, RegisterThing requests) per second for the
    #: whole station, and how many may go at once; half the lowest published AWS rate (station/limiter.py).
    station_request_rate: int = 5
    station_request_burst: int = 5
    #: field name → the fragment line that set it (absent: default).
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: field name → the symbol that set it (absent: default).
    symbols: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: firmware-only symbols seen and ignored, as "path:line: line".
    ignored: tuple[str, ...] = field(default=(), compare=False)

    @property
    def tls_backend_reason(self) -> str:
        return self.origins.get("tls_backend", "default: no fragment enables native TLS")

    def parameters(self) -> dict[str, str]:
        """``template_parameters`` as a dict (placeholders not yet expanded)."""
        out: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in self.template_parameters.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(
                    "CONFIG_NRFPROV_TEMPLATE_PARAMETERS entries must be Key=Value", line=item
                )
            out[key.strip()] = value.strip()
        return out

    def device_client_id(self, imei: str) -> str:
        """The MQTT client id of the device with this IMEI: ``{imei}`` expands in the configured id.

        Unset, it is ``nrf-<IMEI>``, the device id NCS derives from the IMEI
        (``CONFIG_NRF_CLOUD_CLIENT_ID_SRC_IMEI`` with the default ``CONFIG_NRF_CLOUD_CLIENT_ID_PREFIX``
        "nrf-" [sdk-nrf, nrf_cloud library documentation, "Configuration options for device ID"]),
        so no two devices of a fleet share a client id unless the configuration names one for all.
        """
        return self.client_id.replace(IMEI_PLACEHOLDER, imei)

    def symbol(self, field_name: str) -> str:
        """The symbol that set ``field_name`` (the later line, when legacy and new NCS names both
        appear), else the field's default symbol."""
        return self.symbols.get(field_name) or default_symbol(field_name)

    def device_limits(self) -> DeviceLimits | None:
        """The device-mirror limits, or None when ``CONFIG_NRFPROV_MIRROR_DEVICE_LIMITS`` is off."""
        if not self.mirror_device_limits:
            return None
        return DeviceLimits(
            in_content_len=self.mbedtls_in_content_len,
            in_content_symbol=self.symbol("mbedtls_in_content_len"),
            out_content_len=self.mbedtls_out_content_len,
            payload_len=self.mqtt_payload_buffer_len,
            payload_symbol=self.symbol("mqtt_payload_buffer_len"),
        )

    def public_dict(self) -> dict[str, Any]:
        """The settings as plain JSON-able data (``nrfprov config show --json``)."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("origins", "symbols", "ignored")}
        data["tls_backend_reason"] = self.tls_backend_reason
        return data


def settings_from(merged: Mapping[str, Assignment]) -> Settings:
    """Turn merged assignments into Settings; validate our symbols' types and values."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    symbols: dict[str, str] = {}
    ignored: list[str] = []
    for name, a in merged.items():
        spec = _SYMBOLS.get(name)
        if spec is None:
            if name.startswith(OUR_PREFIX):
                raise _unknown_symbol(name, a.path, a.line_no or None)
            ignored.append(a.origin)
            continue
        value: Value | None = a.value
        if (spec.kind is int and isinstance(value, bool)) or not isinstance(value, spec.kind):
            raise ConfigError(
                f"{name} takes {_KIND_NAMES[spec.kind]}", path=a.path, line_no=a.line_no, line=a.line
            )
        problem = spec.check(value) if spec.check else None
        if problem:
            raise ConfigError(f"{name} {problem}", path=a.path, line_no=a.line_no, line=a.line)
        if spec.field == "claim_sec_tag" and value == -1:
            value = None  # MQTT Helper's "unset"
        # Several symbols may feed one field (legacy and v2.9 names): `merged` is in line order,
        # so the later line simply overwrites.
        values[spec.field] = value
        origins[spec.field] = a.origin
        symbols[spec.field] = name
    backend, reason = _resolve_backend(values, origins)
    values.pop("_tls_backend", None)
    values.pop("_ncs_native_tls", None)
    origins.pop("_tls_backend", None)
    origins.pop("_ncs_native_tls", None)
    if reason is not None:
        origins["tls_backend"] = reason
    for private in ("_tls_backend", "_ncs_native_tls"):
        symbols.pop(private, None)
    return Settings(**values, tls_backend=backend, origins=origins, symbols=symbols, ignored=tuple(ignored))


_KIND_NAMES = {bool: "y or n", int: "an integer", str: 'a "quoted string"'}


def _resolve_backend(values: dict[str, Any], origins: dict[str, str]) -> tuple[Backend, str | None]:
    """``native`` when asked, or when the fragments enable NCS native TLS; else ``offload``."""
    explicit = values.get("_tls_backend")
    if explicit is not None:
        return explicit, origins["_tls_backend"]
    if values.get("_ncs_native_tls"):
        return "native", origins["_ncs_native_tls"]
    return "offload", None


def load_settings(
    conf: str | Path | None = None,
    overlays: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
) -> Settings:
    """Read ``conf`` then each overlay in order, apply ``--set`` overrides, return Settings."""
    paths = ([conf] if conf is not None else []) + list(overlays)
    sources = [read_fragment(path) for path in paths]
    sources.append([parse_override(o) for o in overrides])
    return settings_from(merge(sources))
