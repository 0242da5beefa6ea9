"""Python face of the native combined-reply extractor (``native/``, built by cffi as ``nrfprov._native``).

The C core parses the CreateKeysAndCertificate / CreateCertificateFromCsr reply (or any Fleet
Provisioning ``rejected`` reply) in chunks with a fixed-size state and caller-owned buffers: the same
code a device would run to get credentials out of a ~3.5 KB reply through a 2 KB receive buffer.
This wrapper is paranoid on purpose (house rule 10): it checks every return code, reads every size
and limit from the library, and refuses a library whose version stamp differs from the header's or
from the one this module was written for (a stale editable build after a C change).

    ex = CombinedExtractor(fmt="json")
    for chunk in chunks:
        ex.feed(chunk)            # PayloadError (offset set) / PayloadTooLarge
    msg = ex.finish()             # ExtractedMessage

Error messages name the field and byte offset, never field content: the reply carries a private key.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Any, Final, Literal

from nrfprov.errors import ConfigError, MalformedPayload, PayloadError, PayloadTooLarge, UsageError

__all__ = [
    "EXPECTED_NATIVE_VERSION",
    "CombinedExtractor",
    "ExtractedMessage",
    "Format",
    "extract_message",
    "native_limits",
    "native_version",
    "state_size",
]

#: NRFPROV_CORE_VERSION this wrapper was written for (native/include/nrfprov_core.h).
EXPECTED_NATIVE_VERSION: Final = 0x00010100

Format = Literal["json", "cbor"]

# Python attribute per C string field, in enum nrfprov_field order (checked against the C names).
_STRING_FIELDS: Final = (
    ("certificate_id", "certificateId"),
    ("certificate_pem", "certificatePem"),
    ("private_key", "privateKey"),
    ("ownership_token", "certificateOwnershipToken"),
    ("error_code", "errorCode"),
    ("error_message", "errorMessage"),
)
_STATUS_FIELD_NAME: Final = "statusCode"

_REBUILD_HINT = "rebuild the extension: .venv/bin/pip install -e '.[dev]' (or run 'make setup')"


@dataclass(frozen=True)
class ExtractedMessage:
    """The fields of one reply; a field absent from the message is None.

    ``repr()`` hides the private key and the ownership token (both are secrets).
    """

    certificate_id: str | None = None
    certificate_pem: str | None = None
    private_key: str | None = None
    ownership_token: str | None = None
    status_code: int | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def is_rejected(self) -> bool:
        """True for the ``rejected`` shape (statusCode / errorCode / errorMessage)."""
        return self.status_code is not None or self.error_code is not None or self.error_message is not None

    def __repr__(self) -> str:
        def secret(value: str | None) -> str:
            return "None" if value is None else f"<{len(value)} chars redacted>"

        return (
            f"ExtractedMessage(certificate_id={self.certificate_id!r}, "
            f"certificate_pem={secret(self.certificate_pem) if self.certificate_pem else 'None'}, "
            f"private_key={secret(self.private_key)}, ownership_token={secret(self.ownership_token)}, "
            f"status_code={self.status_code!r}, error_code={self.error_code!r}, "
            f"error_message={self.error_message!r})"
        )


@dataclass(frozen=True)
class _Native:
    ffi: Any
    lib: Any
    version: int
    state_size: int
    field_max: tuple[int, ...]
    max_message: int
    max_depth: int
    status_names: dict[int, str]
    offsets: tuple[int, ...]  # of each field's buffer inside one allocation
    total: int
    zeros: bytes  # for wiping
    alloc: Any  # allocator without zero-fill: the C writes before it reads


@functools.cache
def _load() -> _Native:
    """Import the extension once and check it against its header and this wrapper."""
    try:
        _native = importlib.import_module("nrfprov._native")
    except ImportError as exc:
        raise ConfigError(f"the native extractor nrfprov._native is not built ({exc})", hint=_REBUILD_HINT) from exc
    ffi, lib = _native.ffi, _native.lib
    version = int(lib.nrfprov_version())
    if not version == int(lib.NRFPROV_CORE_VERSION) == EXPECTED_NATIVE_VERSION:
        raise ConfigError(
            f"native extractor version mismatch: library {version:#08x}, header "
            f"{int(lib.NRFPROV_CORE_VERSION):#08x}, wrapper expects {EXPECTED_NATIVE_VERSION:#08x}",
            hint=_REBUILD_HINT,
        )
    size = int(lib.nrfprov_state_size())
    if size != ffi.sizeof("struct nrfprov_extractor"):
        raise ConfigError(
            f"native extractor state is {size} bytes in the library but "
            f"{ffi.sizeof('struct nrfprov_extractor')} in the binding",
            hint=_REBUILD_HINT,
        )
    maxima = []
    for index, (_attr, name) in enumerate(_STRING_FIELDS):
        c_name = lib.nrfprov_field_name(index)
        if c_name == ffi.NULL or ffi.string(c_name).decode("ascii") != name:
            raise ConfigError(f"native extractor field {index} is not {name}", hint=_REBUILD_HINT)
        limit = int(lib.nrfprov_field_max(index))
        if limit <= 0:
            raise ConfigError(f"native extractor reports no limit for {name}", hint=_REBUILD_HINT)
        maxima.append(limit)
    status_name = ffi.string(lib.nrfprov_field_name(lib.NRFPROV_FIELD_STATUS_CODE)).decode("ascii")
    if status_name != _STATUS_FIELD_NAME:
        raise ConfigError(f"native extractor status field is {status_name!r}", hint=_REBUILD_HINT)
    names = {code: ffi.string(lib.nrfprov_status_name(code)).decode("ascii") for code in range(-20, 1)}
    offsets = tuple(sum(maxima[:i]) for i in range(len(maxima)))  # nrfprov_set_all_buffers() layout
    if sum(maxima) != int(lib.NRFPROV_ALL_FIELDS_SIZE):
        raise ConfigError(
            f"native extractor field limits sum to {sum(maxima)}, not NRFPROV_ALL_FIELDS_SIZE "
            f"{int(lib.NRFPROV_ALL_FIELDS_SIZE)}",
            hint=_REBUILD_HINT,
        )
    return _Native(
        ffi=ffi,
        lib=lib,
        version=version,
        state_size=size,
        field_max=tuple(maxima),
        max_message=int(lib.NRFPROV_MAX_MESSAGE),
        max_depth=int(lib.NRFPROV_MAX_DEPTH),
        status_names=names,
        offsets=offsets,
        total=sum(maxima),
        zeros=bytes(sum(maxima)),
        alloc=ffi.new_allocator(should_clear_after_alloc=False),
    )


def native_version() -> str:
    """Version of the loaded C library, e.g. ``"1.1.0"``."""
    v = _load().version
    return f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"


def state_size() -> int:
    """Bytes of parser state (``sizeof(struct nrfprov_extractor)``), as the library reports it."""
    return _load().state_size


def native_limits() -> dict[str, int]:
    """The limits compiled into the library: whole message, nesting depth and each string field."""
    n = _load()
    limits = {"message": n.max_message, "depth": n.max_depth}
    limits.update({name: n.field_max[i] for i, (_attr, name) in enumerate(_STRING_FIELDS)})
    return limits


def __getattr__(name: str) -> Any:
    # NATIVE_VERSION / STATE_SIZE are computed on first use so that importing this module never
    # fails just because the extension is not built yet; the error comes when it is needed.
    if name == "NATIVE_VERSION":
        return native_version()
    if name == "STATE_SIZE":
        return state_size()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Status -> (message, hint). Never include payload bytes: they may be key material.
_MESSAGES: Final[dict[str, tuple[str, str]]] = {
    "NRFPROV_E_SYNTAX": ("malformed {fmt} reply: unexpected byte", "the payload is not valid {fmt}"),
    "NRFPROV_E_TRUNCATED": (
        "{fmt} reply ends before its top-level object is complete",
        "the payload was cut short; check the broker and receive-buffer sizes",
    ),
    "NRFPROV_E_DEPTH": (
        "{fmt} reply nests deeper than {depth} levels",
        "Fleet Provisioning replies are flat; this is not one",
    ),
    "NRFPROV_E_UTF8": ("{fmt} reply has invalid UTF-8 in a string", "the payload is corrupted"),
    "NRFPROV_E_ESCAPE": (
        "{fmt} reply has a bad escape sequence or a lone UTF-16 surrogate",
        "the payload is corrupted",
    ),
    "NRFPROV_E_DUPLICATE": (
        "field {field} appears twice in the {fmt} reply",
        "ambiguous credentials are refused; the sender is broken or hostile",
    ),
    "NRFPROV_E_TYPE": ("field {field} has the wrong type in the {fmt} reply", "expected {expected}"),
    "NRFPROV_E_NOT_OBJECT": (
        "{fmt} reply is not an object/map at top level",
        "subscribe to the Fleet Provisioning accepted/rejected topics of the same format",
    ),
    "NRFPROV_E_RANGE": ("field {field} is outside the 64-bit integer range", "the payload is corrupted"),
    "NRFPROV_E_TRAILING": (
        "bytes follow the end of the {fmt} reply's top-level object",
        "one MQTT payload must hold exactly one reply",
    ),
    "NRFPROV_E_CBOR_INVALID": (
        "CBOR reply is not well-formed (reserved additional info, bad indefinite-length chunk "
        "or two-byte simple value below 32)",
        "the payload is not valid CBOR (RFC 8949)",
    ),
    "NRFPROV_E_STATE": ("the extractor has already finished", "use a new CombinedExtractor per message"),
    "NRFPROV_E_ARG": ("the native extractor refused an argument", _REBUILD_HINT),
}


class CombinedExtractor:
    """Streaming extractor for one reply; feed chunks of any size, then call :meth:`finish`."""

    def __init__(self, fmt: Format = "json") -> None:
        if fmt not in ("json", "cbor"):
            raise UsageError(f"payload format must be 'json' or 'cbor', not {fmt!r}")
        n = _load()
        self._n = n
        self._fmt = fmt
        self._fed = 0
        self._state = n.ffi.new("struct nrfprov_extractor *")
        lib = n.lib
        code = lib.NRFPROV_FORMAT_JSON if fmt == "json" else lib.NRFPROV_FORMAT_CBOR
        self._check(lib.nrfprov_init(self._state, n.state_size, code))
        # One allocation holds every field's buffer, each sized by the library's own limit.
        self._buf = n.alloc("uint8_t[]", n.total)
        self._check(lib.nrfprov_set_all_buffers(self._state, self._buf, n.total))

    @property
    def fmt(self) -> Format:
        return self._fmt

    @property
    def bytes_fed(self) -> int:
        return self._fed

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Consume the next piece of the payload (any size, empty is fine)."""
        n = self._n
        size = len(chunk) if isinstance(chunk, bytes) else memoryview(chunk).nbytes
        self._fed += size
        # cffi passes bytes straight through; other buffers need a (zero-copy) cdata view.
        data = chunk if isinstance(chunk, bytes) else n.ffi.from_buffer("uint8_t[]", chunk)
        self._check(n.lib.nrfprov_feed(self._state, data, size))

    def finish(self) -> ExtractedMessage:
        """End of payload: the fields, or PayloadError if the reply is incomplete or invalid."""
        n, st = self._n, self._state
        lib = n.lib
        try:
            self._check(lib.nrfprov_finish(st))
            values: dict[str, Any] = {}
            present = int(lib.nrfprov_present_mask(st))
            for index, (attr, name) in enumerate(_STRING_FIELDS):
                if not present & (1 << index):
                    continue
                length = int(lib.nrfprov_field_len(st, index))
                if not 0 <= length <= n.field_max[index]:
                    raise MalformedPayload(
                        f"native extractor reports {length} bytes for {name}, over its "
                        f"{n.field_max[index]}-byte buffer",
                        reason="internal",
                        offset=None,
                        field=name,
                        hint=_REBUILD_HINT,
                    )
                raw = n.ffi.buffer(self._buf + n.offsets[index], length)[:]
                try:
                    values[attr] = raw.decode("utf-8")
                except UnicodeDecodeError as exc:  # the C validated UTF-8: this is a bug there
                    raise MalformedPayload(
                        f"native extractor delivered invalid UTF-8 for {name}",
                        reason="internal",
                        offset=None,
                        field=name,
                        hint=_REBUILD_HINT,
                    ) from exc
            if present & (1 << lib.NRFPROV_FIELD_STATUS_CODE):
                values["status_code"] = int(lib.nrfprov_status_code(st))
            return ExtractedMessage(**values)
        finally:
            self._wipe()

    def _wipe(self) -> None:
        # The buffers held a private key; the Python str copies are the caller's to guard.
        self._n.ffi.memmove(self._buf, self._n.zeros, self._n.total)

    def _check(self, rc: int) -> None:
        if rc == 0:
            return
        exc = self._error(int(rc))
        if rc != self._n.lib.NRFPROV_E_STATE:
            self._wipe()
        raise exc

    def _error(self, rc: int) -> PayloadError:
        n, lib, st = self._n, self._n.lib, self._state
        reason = n.status_names.get(rc, f"status {rc}")
        offset = int(lib.nrfprov_error_offset(st)) if rc == lib.nrfprov_error(st) else None
        field_index = int(lib.nrfprov_error_field(st))
        field: str | None = None
        if 0 <= field_index < len(_STRING_FIELDS):
            field = _STRING_FIELDS[field_index][1]
        elif field_index == lib.NRFPROV_FIELD_STATUS_CODE:
            field = _STATUS_FIELD_NAME
        if rc == lib.NRFPROV_E_TOO_LARGE:
            big = PayloadTooLarge(
                f"{self._fmt} reply",
                self._fed,
                n.max_message,
                hint="AWS IoT limits an MQTT payload to 128 KB; this is not a Fleet Provisioning reply",
            )
            big.offset = offset
            return big
        if rc == lib.NRFPROV_E_FIELD_TOO_LONG and 0 <= field_index < len(_STRING_FIELDS):
            big = PayloadTooLarge(
                f"field {field} (at byte {offset})",
                int(lib.nrfprov_error_size(st)),
                n.field_max[field_index],
                hint="a credential longer than this cannot be written with one 4096-byte AT%CMNG command",
            )
            big.offset = offset
            return big
        message, hint = _MESSAGES.get(reason, (f"native extractor failed with {reason}", _REBUILD_HINT))
        expected = "an integer" if field == _STATUS_FIELD_NAME else "a text string"
        fmt_args = {"fmt": self._fmt.upper(), "field": field, "depth": n.max_depth, "expected": expected}
        return MalformedPayload(
            message.format(**fmt_args), reason=reason, offset=offset, field=field, hint=hint.format(**fmt_args)
        )


def extract_message(payload: bytes | bytearray | memoryview, fmt: Format = "json") -> ExtractedMessage:
    """Extract the fields of one whole reply payload."""
    ex = CombinedExtractor(fmt)
    ex.feed(payload)
    return ex.finish()
