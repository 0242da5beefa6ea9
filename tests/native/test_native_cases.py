"""Directed cases for the native extractor: escapes, limits, errors and their offsets, CBOR corners."""

from __future__ import annotations

import base64
import json
import os
import struct

import cbor2
import pytest

from nrfprov.errors import MalformedPayload, PayloadError, PayloadTooLarge, UsageError
from nrfprov.extractor import (
    CombinedExtractor,
    ExtractedMessage,
    extract_message,
    native_limits,
    native_version,
    state_size,
)

SECRET = "MIIEowIBAAKCAQEA-SECRET-MATERIAL-DO-NOT-LOG"


def pem(kind: str, der_len: int) -> str:
    body = base64.b64encode(os.urandom(der_len)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"


# A CreateKeysAndCertificate reply of realistic size (~3.5 KB: aws/amazon-freertos #3180; espressif/esp-aws-iot #78).
ACCEPTED = {
    "certificateId": "a" * 64,
    "certificatePem": pem("CERTIFICATE", 862),
    "privateKey": pem("RSA PRIVATE KEY", 1192),
    "certificateOwnershipToken": "eyJ" + "x" * 447,
}


def reason(exc: PayloadError) -> str | None:
    return exc.reason if isinstance(exc, MalformedPayload) else None


def fail(payload: bytes, fmt: str = "json") -> PayloadError:
    with pytest.raises(PayloadError) as info:
        extract_message(payload, fmt)  # type: ignore[arg-type]
    return info.value


# ---- wrapper surface --------------------------------------------------------------------------------


def test_version_state_size_and_limits_come_from_c() -> None:
    assert native_version() == "1.2.0"
    assert 200 < state_size() < 1024  # fixed, small: fits a device's stack
    assert native_limits() == {
        "message": 131072,
        "depth": 32,
        "certificateId": 64,
        "certificatePem": 4096,
        "privateKey": 4096,
        "certificateOwnershipToken": 2048,
        "errorCode": 128,
        "errorMessage": 1024,
    }


def test_realistic_accepted_reply_whole_and_in_device_sized_chunks() -> None:
    payload = json.dumps(ACCEPTED).encode()
    assert 3300 < len(payload) < 3700
    want = ExtractedMessage(
        certificate_id=ACCEPTED["certificateId"],
        certificate_pem=ACCEPTED["certificatePem"],
        private_key=ACCEPTED["privateKey"],
        ownership_token=ACCEPTED["certificateOwnershipToken"],
    )
    for size in (1, 7, 2048, len(payload)):
        ex = CombinedExtractor("json")
        for i in range(0, len(payload), size):
            ex.feed(payload[i : i + size])
        assert ex.finish() == want
    assert extract_message(cbor2.dumps(ACCEPTED), "cbor") == want
    assert not want.is_rejected


def test_rejected_shape() -> None:
    doc = {
        "statusCode": 400,
        "errorCode": "InvalidCertificateOwnershipToken",
        "errorMessage": "Certificate ownership token cannot be empty.",
    }
    for payload, fmt in ((json.dumps(doc).encode(), "json"), (cbor2.dumps(doc), "cbor")):
        msg = extract_message(payload, fmt)  # type: ignore[arg-type]
        assert msg.is_rejected
        assert (msg.status_code, msg.error_code, msg.error_message) == (400, doc["errorCode"], doc["errorMessage"])
        assert msg.private_key is None


def test_repr_hides_secrets() -> None:
    msg = ExtractedMessage(private_key=SECRET, ownership_token="tok-secret", certificate_id="ab")
    assert SECRET not in repr(msg) and "tok-secret" not in repr(msg) and "'ab'" in repr(msg)


def test_bad_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        CombinedExtractor("xml")  # type: ignore[arg-type]


def test_errors_are_sticky_and_finish_once() -> None:
    ex = CombinedExtractor("json")
    with pytest.raises(MalformedPayload) as first:
        ex.feed(b'{"a":x')
    with pytest.raises(MalformedPayload) as again:
        ex.feed(b"}")
    assert first.value.offset == again.value.offset == 5
    ex = CombinedExtractor("json")
    ex.feed(b"{}")
    assert ex.finish() == ExtractedMessage()
    with pytest.raises(MalformedPayload) as late:
        ex.feed(b" ")
    assert late.value.reason == "NRFPROV_E_STATE"


# ---- JSON strings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        (r"\n\/\"\\\b\f\r\t", '\n/"\\\b\f\r\t'),
        (r"\u0041\u00e9\u20AC", "A\u00e9\u20ac"),
        (r"\ud83d\ude00", "\U0001f600"),
        (r"\uDBFF\uDFFF", "\U0010ffff"),
        (r"\u0000", "\x00"),
        ("caf\u00e9 \u20ac \U0001f600", "caf\u00e9 \u20ac \U0001f600"),
    ],
)
def test_json_escapes(escaped: str, text: str) -> None:
    payload = ('{"errorMessage":"' + escaped + '"}').encode()
    assert json.loads(payload)["errorMessage"] == text
    for size in (1, len(payload)):
        ex = CombinedExtractor("json")
        for i in range(0, len(payload), size):
            ex.feed(payload[i : i + size])
        assert ex.finish().error_message == text


@pytest.mark.parametrize(
    "escaped",
    [
        r"\ud83d",
        r"\ud83dx",
        r"\ud83d\n",
        r"\ud83d\u0041",
        r"\ud83d\ud83d",
        r"\ude00",
        r"\u12",
        r"\u12G4",
        r"\x41",
        r"\'",
    ],
)
def test_json_bad_escapes_and_lone_surrogates(escaped: str) -> None:
    exc = fail(('{"x":"' + escaped + '"}').encode())
    assert reason(exc) == "NRFPROV_E_ESCAPE"


def test_escaped_key_is_the_same_key() -> None:
    msg = extract_message(b'{"privat\\u0065Key":"k"}')
    assert msg.private_key == "k"
    exc = fail(b'{"privateKey":"k","privat\\u0065Key":"k2"}')
    assert isinstance(exc, MalformedPayload) and exc.reason == "NRFPROV_E_DUPLICATE"
    assert exc.field == "privateKey" and exc.offset == 18


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc0\xaf",
        b"\xe0\x80\xaf",
        b"\xed\xa0\x80",
        b"\xf4\x90\x80\x80",
        b"\xff",
        b"\xe2\x82",
        b"\x80",
        b"\xf8\x88\x80\x80\x80",
        b"\xc3A",  # ASCII where a continuation byte is due (found by the fuzzer)
        b"\xe2\x82zz",
    ],
)
def test_invalid_utf8_is_refused_in_fields_and_in_skipped_strings(raw: bytes) -> None:
    for payload in (b'{"errorCode":"' + raw + b'"}', b'{"skip":["' + raw + b'"]}', b'{"' + raw + b'":1}'):
        assert reason(fail(payload)) == "NRFPROV_E_UTF8"
    text = bytes([0x60 + len(raw)]) + raw
    for payload in (b"\xa1\x69errorCode" + text, b"\xa1\x61s\x81" + text, b"\xa1" + text + b"\x01"):
        assert reason(fail(payload, "cbor")) == "NRFPROV_E_UTF8"


def test_control_character_in_string_is_a_syntax_error() -> None:
    exc = fail(b'{"errorCode":"a\nb"}')
    assert reason(exc) == "NRFPROV_E_SYNTAX" and exc.offset == 15


# ---- JSON grammar -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "why", "offset"),
    [
        (b"", "NRFPROV_E_TRUNCATED", 0),
        (b"   ", "NRFPROV_E_TRUNCATED", 3),
        (b"[]", "NRFPROV_E_NOT_OBJECT", 0),
        (b' "x"', "NRFPROV_E_NOT_OBJECT", 1),
        (b"{} {}", "NRFPROV_E_TRAILING", 3),
        (b"{},", "NRFPROV_E_TRAILING", 2),
        (b'{"a":1,}', "NRFPROV_E_SYNTAX", 7),
        (b'{"a":01}', "NRFPROV_E_SYNTAX", 6),
        (b'{"a":-}', "NRFPROV_E_SYNTAX", 6),
        (b'{"a":1.}', "NRFPROV_E_SYNTAX", 7),
        (b'{"a":1e}', "NRFPROV_E_SYNTAX", 7),
        (b'{"a":NaN}', "NRFPROV_E_SYNTAX", 5),
        (b'{"a":Infinity}', "NRFPROV_E_SYNTAX", 5),
        (b'{"a":tru}', "NRFPROV_E_SYNTAX", 8),
        (b'{"a":nul1}', "NRFPROV_E_SYNTAX", 8),
        (b"{'a':1}", "NRFPROV_E_SYNTAX", 1),
        (b'{"a" 1}', "NRFPROV_E_SYNTAX", 5),
        (b'{"a":[1}', "NRFPROV_E_SYNTAX", 7),
        (b'{"a":{]}', "NRFPROV_E_SYNTAX", 6),
        (b'{"a":1 /* c */}', "NRFPROV_E_SYNTAX", 7),
        (b'\xef\xbb\xbf{"a":1}', "NRFPROV_E_NOT_OBJECT", 0),
    ],
)
def test_json_malformed(payload: bytes, why: str, offset: int) -> None:
    exc = fail(payload)
    assert (reason(exc), exc.offset) == (why, offset)


def test_unknown_values_of_every_type_are_skipped() -> None:
    payload = (
        b'{"n":-12.5e+3,"t":true,"f":false,"z":null,"a":[[],{},[{"privateKey":1}]],'
        b'"o":{"certificateId":{"x":[null]}},"s":"\\u00e9","certificateId":"id","e":0E0,"g":-0}'
    )
    assert extract_message(payload) == ExtractedMessage(certificate_id="id")


def test_depth_limit_is_32_levels() -> None:
    ok = b'{"a":' + b"[" * 31 + b"]" * 31 + b"}"
    assert extract_message(ok) == ExtractedMessage()
    exc = fail(b'{"a":' + b"[" * 32 + b"]" * 32 + b"}")
    assert (reason(exc), exc.offset) == ("NRFPROV_E_DEPTH", 5 + 31)
    ok_cbor = b"\xa1\x61a" + b"\x81" * 30 + b"\x80"
    assert extract_message(ok_cbor, "cbor") == ExtractedMessage()
    exc = fail(b"\xa1\x61a" + b"\x81" * 31 + b"\x80", "cbor")
    assert (reason(exc), exc.offset) == ("NRFPROV_E_DEPTH", 3 + 31)


# ---- field types, duplicates, ranges ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"certificatePem":1}', "certificatePem"),
        (b'{"privateKey":null}', "privateKey"),
        (b'{"privateKey":["x"]}', "privateKey"),
        (b'{"certificateId":{"a":"b"}}', "certificateId"),
        (b'{"statusCode":"400"}', "statusCode"),
        (b'{"statusCode":400.0}', "statusCode"),
        (b'{"statusCode":4e2}', "statusCode"),
        (b'{"statusCode":true}', "statusCode"),
    ],
)
def test_known_field_with_wrong_type(payload: bytes, field: str) -> None:
    exc = fail(payload)
    assert isinstance(exc, MalformedPayload)
    assert (exc.reason, exc.field, exc.offset) == ("NRFPROV_E_TYPE", field, payload.index(b":") + 1)


def test_status_code_range() -> None:
    assert extract_message(b'{"statusCode":-9223372036854775808}').status_code == -(2**63)
    assert extract_message(b'{"statusCode":9223372036854775807}').status_code == 2**63 - 1
    assert extract_message(b'{"statusCode":-0}').status_code == 0
    for big in (b"9223372036854775808", b"-9223372036854775809", b"1" * 40):
        assert reason(fail(b'{"statusCode":' + big + b"}")) == "NRFPROV_E_RANGE"
    assert extract_message(cbor2.dumps({"statusCode": -(2**63)}), "cbor").status_code == -(2**63)
    assert reason(fail(cbor2.dumps({"statusCode": 2**63}), "cbor")) == "NRFPROV_E_RANGE"
    assert reason(fail(cbor2.dumps({"statusCode": -(2**63) - 1}), "cbor")) == "NRFPROV_E_RANGE"


def test_duplicate_known_keys_are_refused_unknown_ones_tolerated() -> None:
    exc = fail(b'{"certificatePem":"a","x":1,"certificatePem":"a"}')
    assert isinstance(exc, MalformedPayload) and (exc.reason, exc.field, exc.offset) == (
        "NRFPROV_E_DUPLICATE",
        "certificatePem",
        28,
    )
    assert reason(fail(b'{"statusCode":1,"statusCode":1}')) == "NRFPROV_E_DUPLICATE"
    assert reason(fail(b"\xa2\x69errorCode\x61a\x69errorCode\x61a", "cbor")) == "NRFPROV_E_DUPLICATE"
    # Unknown keys are not tracked (that would need unbounded memory); json.loads keeps the last.
    assert extract_message(b'{"x":1,"x":2}') == ExtractedMessage()


# ---- limits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        ("certificatePem", 4096),
        ("privateKey", 4096),
        ("certificateId", 64),
        ("certificateOwnershipToken", 2048),
        ("errorCode", 128),
        ("errorMessage", 1024),
    ],
)
def test_field_limits_exact_and_one_over(field: str, limit: int) -> None:
    assert len(getattr(extract_message(json.dumps({field: "A" * limit}).encode()), _attr(field))) == limit
    # The limit is on decoded bytes: "\n" escapes count once, two-byte characters twice.
    assert len(getattr(extract_message(json.dumps({field: "\n" * limit}).encode()), _attr(field))) == limit
    over = "\u00e9" * (limit // 2 + 1)
    for payload, fmt, start in (
        (json.dumps({"x": 1, field: "A" * (limit + 1)}).encode(), "json", b'"A'),
        (cbor2.dumps({"x": 1, field: over}), "cbor", cbor2.dumps(over)),
    ):
        with pytest.raises(PayloadTooLarge) as info:
            extract_message(payload, fmt)  # type: ignore[arg-type]
        exc = info.value
        assert exc.limit == limit and exc.size in (limit + 1, limit + 2) and field in str(exc)
        assert exc.offset == payload.index(start)


def _attr(field: str) -> str:
    return {
        "certificatePem": "certificate_pem",
        "privateKey": "private_key",
        "certificateId": "certificate_id",
        "certificateOwnershipToken": "ownership_token",
        "errorCode": "error_code",
        "errorMessage": "error_message",
    }[field]


def test_message_limit_is_128_kib() -> None:
    head = b'{"certificateId":"id","pad":"'
    exact = head + b"x" * (131072 - len(head) - 2) + b'"}'
    assert len(exact) == 131072 and extract_message(exact).certificate_id == "id"
    with pytest.raises(PayloadTooLarge) as info:
        extract_message(exact + b" ")
    assert (info.value.offset, info.value.limit, info.value.size) == (131072, 131072, 131073)
    ex = CombinedExtractor("cbor")
    ex.feed(b"\xa1\x63pad\x5a" + struct.pack(">I", 200000))
    with pytest.raises(PayloadTooLarge):
        for _ in range(200):
            ex.feed(b"\0" * 1000)


def test_no_key_material_in_any_error_message() -> None:
    doc = dict(ACCEPTED, privateKey=SECRET * 20)
    payload = json.dumps(doc).encode()
    broken = [payload[:n] for n in range(0, len(payload), 97)]
    broken += [
        payload.replace(b'"privateKey"', b'"privateKey":1,"privateKey"'),
        payload + b"x",
        payload.replace(SECRET.encode(), SECRET.encode() + b"\xff", 1),
        json.dumps(dict(doc, privateKey=SECRET * 200)).encode(),
    ]
    for data in broken:
        exc = fail(data)
        assert "SECRET" not in str(exc) and "MIIE" not in str(exc) and "SECRET" not in repr(exc.args)


# ---- CBOR corners -----------------------------------------------------------------------------------


def test_cbor_indefinite_everything() -> None:
    payload = (
        b"\xbf"  # indefinite map
        b"\x7f\x64cert\x69ificateId\xff"  # key in two chunks
        b"\x7f\x62ab\x60\x62cd\xff"  # value in three chunks, one empty
        b"\x63pad\x9f\x5f\x41\x00\xff\xbf\xff\xf9\x3c\x00\xfa\x3f\x80\x00\x00\xff"  # skipped junk
        b"\xff"
    )
    assert cbor2.loads(payload)["certificateId"] == "abcd"
    for size in (1, len(payload)):
        ex = CombinedExtractor("cbor")
        for i in range(0, len(payload), size):
            ex.feed(payload[i : i + size])
        assert ex.finish() == ExtractedMessage(certificate_id="abcd")


def test_cbor_skips_tags_floats_simple_values_and_odd_keys() -> None:
    payload = cbor2.dumps(
        {
            "t": cbor2.CBORTag(1234, [1.5, float("inf"), None, True, cbor2.undefined, cbor2.CBORSimpleValue(99)]),
            7: "not a key we know",
            b"errorCode": "bytes key",
            "statusCode": -1,
            "errorCode": "E",
        }
    )
    assert extract_message(payload, "cbor") == ExtractedMessage(status_code=-1, error_code="E")
    # a tagged text key is not a field name
    assert extract_message(b"\xa1\xd8\x20\x69errorCode\x61x", "cbor") == ExtractedMessage()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"\xa1\x61a\x1c", "NRFPROV_E_CBOR_INVALID"),  # reserved additional info 28..30
        (b"\xa1\x61a\x3d", "NRFPROV_E_CBOR_INVALID"),
        (b"\xa1\x61a\x5e", "NRFPROV_E_CBOR_INVALID"),
        (b"\xa1\x61a\xfe", "NRFPROV_E_CBOR_INVALID"),
        (b"\xa1\x61a\x1f", "NRFPROV_E_CBOR_INVALID"),  # indefinite uint
        (b"\xa1\x61a\xdf\x00", "NRFPROV_E_CBOR_INVALID"),  # indefinite tag
        (b"\xa1\x61a\x7f\x41x\xff", "NRFPROV_E_CBOR_INVALID"),  # byte chunk in a text string
        (b"\xa1\x61a\x7f\x7f\xff\xff", "NRFPROV_E_CBOR_INVALID"),  # nested indefinite chunk
        (b"\xa1\x61a\xf8\x10", "NRFPROV_E_CBOR_INVALID"),  # two-byte simple value < 32
        (b"\xa1\x61a\xff", "NRFPROV_E_SYNTAX"),  # break in a definite map
        (b"\xbf\x61a\xff", "NRFPROV_E_SYNTAX"),  # break between key and value
        (b"\xff", "NRFPROV_E_SYNTAX"),
        (b"\xa1\x61a\xd9\x04\xd2\xff", "NRFPROV_E_CBOR_INVALID"),  # tagged break
        (b"\x80", "NRFPROV_E_NOT_OBJECT"),
        (b"\xd9\xd9\xf7\xa0", "NRFPROV_E_NOT_OBJECT"),  # self-describe tag at top level
        (b"\xa0\x00", "NRFPROV_E_TRAILING"),
        (b"\xa1\x6aprivateKey\x62\xc3\x28", "NRFPROV_E_UTF8"),
        (b"\xa1\x69errorCode\x7f\x61\xc3\x61\xa9\xff", "NRFPROV_E_UTF8"),  # character split over chunks
        (b"\xa1\x69errorCode\x41x", "NRFPROV_E_TYPE"),
        (b"\xa1\x69errorCode\xc0\x61x", "NRFPROV_E_TYPE"),
        (b"\xa1\x6astatusCode\xf9\x5e\x40", "NRFPROV_E_TYPE"),
        (b"\xa1\x61a", "NRFPROV_E_TRUNCATED"),
        (b"\xa1\x61a\x1b\x00\x00", "NRFPROV_E_TRUNCATED"),
        (b"\xa1\x61a\x9b\xff\xff\xff\xff\xff\xff\xff\xff", "NRFPROV_E_TRUNCATED"),
    ],
)
def test_cbor_malformed(payload: bytes, why: str) -> None:
    assert reason(fail(payload, "cbor")) == why


# ---- the C API directly (what firmware calls) --------------------------------------------------------


def test_c_api_block_layout_mask_and_arguments() -> None:
    import nrfprov._native as native  # type: ignore[import-not-found]

    ffi, lib = native.ffi, native.lib
    ex = ffi.new("struct nrfprov_extractor *")
    assert lib.nrfprov_init(ex, ffi.sizeof(ex[0]) - 1, lib.NRFPROV_FORMAT_JSON) == lib.NRFPROV_E_ARG
    assert lib.nrfprov_init(ex, ffi.sizeof(ex[0]), 7) == lib.NRFPROV_E_ARG
    assert lib.nrfprov_init(ex, ffi.sizeof(ex[0]), lib.NRFPROV_FORMAT_JSON) == lib.NRFPROV_OK
    block = ffi.new("uint8_t[]", lib.NRFPROV_ALL_FIELDS_SIZE)
    assert lib.nrfprov_set_all_buffers(ex, block, lib.NRFPROV_ALL_FIELDS_SIZE - 1) == lib.NRFPROV_E_ARG
    assert lib.nrfprov_set_all_buffers(ex, block, lib.NRFPROV_ALL_FIELDS_SIZE) == lib.NRFPROV_OK
    msg = b'{"errorCode":"E","statusCode":7,"certificateId":"id"}'
    assert lib.nrfprov_feed(ex, msg, len(msg)) == lib.NRFPROV_OK
    assert lib.nrfprov_set_buffer(ex, 0, block, 1) == lib.NRFPROV_E_STATE  # too late: feeding began
    assert lib.nrfprov_finish(ex) == lib.NRFPROV_OK
    want = (1 << lib.NRFPROV_FIELD_ERROR_CODE) | (1 << lib.NRFPROV_FIELD_STATUS_CODE) | 1
    assert lib.nrfprov_present_mask(ex) == want
    error_code_at = 64 + 4096 + 4096 + 2048  # enum order, each field at its limit
    assert bytes(ffi.buffer(block + error_code_at, 1)) == b"E"
    assert bytes(ffi.buffer(block, 2)) == b"id"
    assert lib.nrfprov_finish(ex) == lib.NRFPROV_E_STATE
    assert lib.nrfprov_status_code(ex) == 7  # results survive a misuse
    assert ffi.string(lib.nrfprov_status_name(-999)) == b"NRFPROV_E_UNKNOWN"
    assert lib.nrfprov_field_name(99) == ffi.NULL and lib.nrfprov_field_max(6) == 0


def test_small_caller_buffer_lowers_the_limit() -> None:
    import nrfprov._native as native  # type: ignore[import-not-found]

    ffi, lib = native.ffi, native.lib
    ex = ffi.new("struct nrfprov_extractor *")
    assert lib.nrfprov_init(ex, ffi.sizeof(ex[0]), lib.NRFPROV_FORMAT_CBOR) == lib.NRFPROV_OK
    small = ffi.new("uint8_t[]", 3)
    assert lib.nrfprov_set_buffer(ex, lib.NRFPROV_FIELD_ERROR_CODE, small, 3) == lib.NRFPROV_OK
    msg = cbor2.dumps({"errorCode": "ABCD"})
    assert lib.nrfprov_feed(ex, msg, len(msg)) == lib.NRFPROV_E_FIELD_TOO_LONG
    assert (lib.nrfprov_error_size(ex), lib.nrfprov_error_field(ex)) == (4, lib.NRFPROV_FIELD_ERROR_CODE)
    assert bytes(small) == b"ABC"


def test_stale_library_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import nrfprov.extractor as mod
    from nrfprov.errors import ConfigError

    monkeypatch.setattr(mod, "EXPECTED_NATIVE_VERSION", mod.EXPECTED_NATIVE_VERSION + 1)
    mod._load.cache_clear()
    try:
        with pytest.raises(ConfigError, match="version mismatch"):
            CombinedExtractor("json")
    finally:
        monkeypatch.undo()
        mod._load.cache_clear()
    assert extract_message(b"{}") == ExtractedMessage()
