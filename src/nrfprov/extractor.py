"""Python face of the native combined-reply extractor (``native/``, built by cffi as ``nrfprov._native``).

The C core parses the CreateKeysAndCertificate / CreateCertificateFromCsr reply (or any Fleet
Provisioning ``rejected`` reply) in chunks with a fixed-size state and caller-owned buffers: the same
code a device would run to get credentials out of a ~3.5 KB reply through a 2 KB receive buffer.
This wrapper is paranoid on purpose: it checks every return code, reads every size
and limit from the library, and refuses a library whose version stamp differs from the header's or
from the one this module was written for (a stale editable build after a C change).

    ex = CombinedExtractor(fmt="json")
    for chunk in chunks:
        ex.feed(chunk)            # PayloadError (offset set) / PayloadTooLarge
    msg = ex.finish()             # ExtractedMessage

Error messages name the field and byte offset, never field content: the reply carries a private key.

Memory and threads: the parser state and the 11,456-byte field block are a "scratch set" taken from a
small per-process pool and given back after the message, so a message allocates nothing. After every
message (success or error) the bytes the C wrote into the block are zeroed (``nrfprov_wipe``: what
was written, not the whole block). A scratch set belongs to exactly one caller between taking and
giving back (``list.pop``/``list.append`` are atomic), so :func:`extract_message` is safe from any
number of threads; one :class:`CombinedExtractor` is one message for one thread at a time.
"""

from __future__ import annotations

import functools
import importlib
import logging
import struct
from dataclasses import dataclass, fields
from typing import Any, Final

from nrfprov.errors import ConfigError, MalformedPayload, PayloadError, PayloadTooLarge, UsageError
from nrfprov.names import PayloadFormat

log = logging.getLogger(__name__)

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
EXPECTED_NATIVE_VERSION: Final = 0x00010200

#: The payload formats the extractor reads (``nrfprov.names.PayloadFormat``).
Format = PayloadFormat

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

# Scratch sets kept for reuse. Each is one state (488 B) + one field block (NRFPROV_ALL_FIELDS_SIZE,
# 11,456 B) + one result (40 B), so the pool holds at most ~48 KB. It only needs as many as messages
# being parsed at once (one per thread); beyond that a caller allocates its own, freed afterwards.
_POOL_LIMIT: Final = 4

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
    total: int  # bytes of one field block (NRFPROV_ALL_FIELDS_SIZE)
    # (field index, attribute, C name, offset in the block, limit) per string field, enum order
    layout: tuple[tuple[int, str, str, int, int], ...]
    formats: dict[str, int]  # "json"/"cbor" -> NRFPROV_FORMAT_*
    status_bit: int  # bit of statusCode in nrfprov_result.present
    pool: list[_Scratch]  # idle scratch sets (see _POOL_LIMIT)
    result: struct.Struct  # struct nrfprov_result, read in one go (layout checked in _load)


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
    result = struct.Struct(f"@iI{len(_STRING_FIELDS)}Iq")  # status, present, len[6], status_code
    layout_c = [ffi.sizeof("struct nrfprov_result")] + [
        ffi.offsetof("struct nrfprov_result", m) for m in ("status", "present", "len", "status_code")
    ]
    if layout_c != [result.size, 0, 4, 8, 8 + 4 * len(_STRING_FIELDS)]:
        raise ConfigError(
            f"native extractor struct nrfprov_result layout {layout_c} is not the expected one", hint=_REBUILD_HINT
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
        total=sum(maxima),
        layout=tuple(
            (index, attr, name, offsets[index], maxima[index]) for index, (attr, name) in enumerate(_STRING_FIELDS)
        ),
        formats={"json": int(lib.NRFPROV_FORMAT_JSON), "cbor": int(lib.NRFPROV_FORMAT_CBOR)},
        status_bit=1 << int(lib.NRFPROV_FIELD_STATUS_CODE),
        pool=[],
        result=result,
    )


class _Scratch:
    """One message's memory: parser state, field block, result, and a view of the block for decoding."""

    __slots__ = ("block", "result", "result_view", "state", "view")

    def __init__(self, n: _Native) -> None:
        # Zero-filled once here, then only ever wiped where the C wrote: no stale heap bytes inside.
        self.state = n.ffi.new("struct nrfprov_extractor *")
        self.block = n.ffi.new("uint8_t[]", n.total)
        self.result = n.ffi.new("struct nrfprov_result *")
        self.view = memoryview(n.ffi.buffer(self.block))
        self.result_view = memoryview(n.ffi.buffer(self.result))


def _take(n: _Native) -> _Scratch:
    try:
        return n.pool.pop()  # atomic: this scratch set is now ours alone
    except IndexError:
        return _Scratch(n)


def _give_back(n: _Native, scratch: _Scratch) -> None:
    """Return a wiped scratch set to the pool (or let it be freed when the pool is full)."""
    if len(n.pool) < _POOL_LIMIT:
        n.pool.append(scratch)


def _wipe(n: _Native, scratch: _Scratch) -> MalformedPayload | None:
    """Zero what the C wrote into the block (``nrfprov_wipe``). If the library refuses (a state it no
    longer recognises: a stale build or memory corruption), zero the whole block here instead, so no
    key byte survives either way, and return the error for the caller to raise."""
    rc = int(n.lib.nrfprov_wipe(scratch.state))
    if rc == 0:
        return None
    scratch.view[:] = bytes(n.total)
    reason = n.status_names.get(rc, f"status {rc}")
    return MalformedPayload(f"native extractor refused to wipe its buffers ({reason}); wiped them in Python",
                            reason=reason, offset=None, hint=_REBUILD_HINT)


def _format_code(n: _Native, fmt: str) -> int:
    code = n.formats.get(fmt) if isinstance(fmt, str) else None
    if code is None:
        raise UsageError(f"payload format must be 'json' or 'cbor', not {fmt!r}")
    return code


def native_version() -> str:
    """Version of the loaded C library, e.g. ``"1.2.0"``."""
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
    """Streaming extractor for one reply; feed chunks of any size, then call :meth:`finish`.

    One message, one thread at a time (see the module docstring).
    """

    def __init__(self, fmt: Format = "json") -> None:
        self._scratch: _Scratch | None = None  # first: __del__ runs even if this raises
        n = _load()
        code = _format_code(n, fmt)
        self._n = n
        self._fmt: Format = fmt
        self._fed = 0
        scratch = _take(n)
        lib = n.lib
        rc = lib.nrfprov_init(scratch.state, n.state_size, code)
        if rc == 0:
            # One block holds every field's buffer, each sized by the library's own limit.
            rc = lib.nrfprov_set_all_buffers(scratch.state, scratch.block, n.total)
        if rc != 0:
            _give_back(n, scratch)  # nothing was parsed into it
            raise _error(n, scratch.state, int(rc), fmt, 0)
        self._scratch = scratch

    @property
    def fmt(self) -> Format:
        return self._fmt

    @property
    def bytes_fed(self) -> int:
        return self._fed

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """Consume the next piece of the payload (any size, empty is fine)."""
        scratch = self._scratch
        if scratch is None:
            raise _finished_error()
        n = self._n
        if isinstance(chunk, bytes):
            size = len(chunk)
            data: Any = chunk  # cffi passes bytes straight through
        else:
            size = memoryview(chunk).nbytes
            data = n.ffi.from_buffer("uint8_t[]", chunk)  # zero-copy view of other buffers
        self._fed += size
        rc = n.lib.nrfprov_feed(scratch.state, data, size)
        if rc != 0:
            self._fail(scratch, int(rc))

    def finish(self) -> ExtractedMessage:
        """End of payload: the fields, or PayloadError if the reply is incomplete or invalid."""
        scratch = self._scratch
        if scratch is None:
            raise _finished_error()
        n = self._n
        lib = n.lib
        rc = lib.nrfprov_finish(scratch.state)
        if rc != 0:
            self._fail(scratch, int(rc))
        try:
            if lib.nrfprov_result(scratch.state, scratch.result) != 0:
                raise _error(n, scratch.state, int(lib.NRFPROV_E_ARG), self._fmt, self._fed)
            return _collect(n, scratch)
        finally:
            failed = _wipe(n, scratch)
            # Done: later calls raise "already finished" here, so the scratch set can serve others.
            self._scratch = None
            _give_back(n, scratch)
            if failed is not None:
                raise failed  # the message came out of a state the library disowns: do not trust it

    def _fail(self, scratch: _Scratch, rc: int) -> None:
        """Raise the error for rc; the scratch set stays ours, because C errors are sticky."""
        exc = _error(self._n, scratch.state, rc, self._fmt, self._fed)
        failed = _wipe(self._n, scratch)  # what was written so far may be part of a key
        if failed is not None:
            raise failed from exc
        raise exc

    def __del__(self) -> None:
        # Abandoned mid-message or after an error: zero what the C wrote (it may be part of a key).
        # Nothing else can reach this scratch set any more, so it may serve the next message.
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            self._scratch = None
            failed = _wipe(self._n, scratch)
            if failed is not None:  # nobody to raise to from a finaliser; the block is zeroed anyway
                log.error("%s", failed)
            _give_back(self._n, scratch)


# Every attribute of ExtractedMessage, None: the starting point of a message built by _collect.
_NO_FIELDS: Final = {f.name: None for f in fields(ExtractedMessage)}


def _collect(n: _Native, scratch: _Scratch) -> ExtractedMessage:
    """Build the message from a successful nrfprov_result (the caller wipes afterwards)."""
    res = n.result.unpack_from(scratch.result_view)  # status, present, len[0..5], status_code
    present = res[1]
    # Equivalent to ExtractedMessage(**values) (same attributes, all set), at a third of the cost of
    # the frozen dataclass __init__ (one object.__setattr__ per field): this runs once per message.
    msg = object.__new__(ExtractedMessage)
    values = msg.__dict__
    values.update(_NO_FIELDS)
    view = scratch.view
    for index, attr, name, offset, limit in n.layout:
        if not present & (1 << index):
            continue
        length = res[2 + index]
        if not 0 <= length <= limit:
            raise MalformedPayload(
                f"native extractor reports {length} bytes for {name}, over its {limit}-byte buffer",
                reason="internal",
                offset=None,
                field=name,
                hint=_REBUILD_HINT,
            )
        try:
            # Decoded straight from the block: no intermediate bytes copy of the key.
            values[attr] = str(view[offset : offset + length], "utf-8")
        except UnicodeDecodeError as exc:  # the C validated UTF-8: this is a bug there
            raise MalformedPayload(
                f"native extractor delivered invalid UTF-8 for {name}",
                reason="internal",
                offset=None,
                field=name,
                hint=_REBUILD_HINT,
            ) from exc
    if present & n.status_bit:
        values["status_code"] = res[-1]
    return msg


def _finished_error() -> MalformedPayload:
    """What the C reports for feed/finish after a successful finish (NRFPROV_E_STATE)."""
    reason = "NRFPROV_E_STATE"
    message, hint = _MESSAGES[reason]
    return MalformedPayload(message, reason=reason, offset=None, field=None, hint=hint)


def _error(n: _Native, st: Any, rc: int, fmt: Format, fed: int) -> PayloadError:
    lib = n.lib
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
            f"{fmt} reply",
            fed,
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
    fmt_args = {"fmt": fmt.upper(), "field": field, "depth": n.max_depth, "expected": expected}
    return MalformedPayload(
        message.format(**fmt_args), reason=reason, offset=offset, field=field, hint=hint.format(**fmt_args)
    )


def extract_message(payload: bytes | bytearray | memoryview, fmt: Format = "json") -> ExtractedMessage:
    """Extract the fields of one whole reply payload (one C call: init, feed, finish, results)."""
    n = _load()
    code = _format_code(n, fmt)
    if isinstance(payload, bytes):
        size = len(payload)
        data: Any = payload
    else:
        size = memoryview(payload).nbytes
        data = n.ffi.from_buffer("uint8_t[]", payload)
    pool = n.pool
    try:
        scratch = pool.pop()  # _take() inlined: this runs once per message
    except IndexError:
        scratch = _Scratch(n)
    try:
        state = scratch.state
        rc = n.lib.nrfprov_extract(state, n.state_size, code, scratch.block, n.total, data, size, scratch.result)
        if rc != 0:
            raise _error(n, state, int(rc), fmt, size)
        return _collect(n, scratch)
    finally:
        # Nothing outlives this call, so the scratch set is always wiped and given back. (Two threads
        # may both see room and overfill the pool by one; harmless, the limit only bounds idle memory.)
        failed = _wipe(n, scratch)
        if len(pool) < _POOL_LIMIT:
            pool.append(scratch)
        if failed is not None:
            raise failed
