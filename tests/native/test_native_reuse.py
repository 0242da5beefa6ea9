"""Scratch reuse, wiping and the one-call path of the native extractor (C API 1.2).

The wrapper keeps a small pool of scratch sets (state + field block + result) and reuses them across
messages; after every message it zeroes only what the C wrote (``nrfprov_wipe``). These tests check
that no written byte survives any outcome (success, error, abandonment), that the one-call
``nrfprov_extract`` path (``extract_message``) agrees with the streaming path on every input, and that
concurrent threads never share a scratch set.
"""

from __future__ import annotations

import gc
import json
import random
import threading
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from native_docs import cbor_dumps_random, cbor_value, json_dumps_random, reply_docs

import nrfprov.extractor as mod
from nrfprov.errors import MalformedPayload, PayloadError
from nrfprov.extractor import CombinedExtractor, ExtractedMessage, extract_message

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pool_blocks_are_zero() -> bool:
    n = mod._load()
    return all(not any(scratch.view) for scratch in n.pool)


def outcome(call: Any) -> Any:
    try:
        return call()
    except PayloadError as exc:
        return (type(exc).__name__, getattr(exc, "reason", None), exc.offset, str(exc))


def streamed(payload: bytes, fmt: str, size: int) -> ExtractedMessage:
    ex = CombinedExtractor(fmt)  # type: ignore[arg-type]
    for i in range(0, len(payload), size):
        ex.feed(payload[i : i + size])
    return ex.finish()


@st.composite
def payloads(draw: st.DrawFn) -> tuple[bytes, str]:
    """Valid replies, their prefixes (errors after fields were partly written) and bit-flipped copies."""
    fmt = draw(st.sampled_from(["json", "cbor"]))
    rnd = draw(st.randoms(use_true_random=False))
    if fmt == "json":
        data = bytearray(json_dumps_random(draw(reply_docs()), rnd).encode())
    else:
        data = bytearray(cbor_dumps_random(draw(reply_docs(extra_values=cbor_value)), rnd))
    how = draw(st.sampled_from(["whole", "prefix", "flip"]))
    if how == "prefix" and data:
        del data[rnd.randrange(len(data)) :]
    elif how == "flip" and data:
        data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
    return bytes(data), fmt


@FAST
@given(case=payloads(), size=st.integers(1, 97))
def test_one_call_path_equals_streaming_and_leaves_only_zeros(case: tuple[bytes, str], size: int) -> None:
    payload, fmt = case
    whole = outcome(lambda: extract_message(payload, fmt))  # type: ignore[arg-type]
    assert pool_blocks_are_zero()
    assert outcome(lambda: streamed(payload, fmt, size)) == whole
    assert outcome(lambda: extract_message(bytearray(payload), fmt)) == whole  # type: ignore[arg-type]
    assert pool_blocks_are_zero()


def test_error_wipes_at_once_and_stays_sticky() -> None:
    secret = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA" + "k" * 500
    payload = json.dumps({"privateKey": secret, "certificateId": "x"}).encode()
    cut = payload.index(b'"x"') + 3  # the whole key was written, the message breaks after it
    ex = CombinedExtractor("json")
    ex.feed(payload[:cut])
    scratch = ex._scratch
    assert scratch is not None and b"MIIEowIBAAKCAQEA" in bytes(scratch.view)  # written, as it streams
    with pytest.raises(MalformedPayload) as first:
        ex.feed(b"!")
    assert not any(scratch.view)  # zeroed when the error is raised, not when the object dies
    with pytest.raises(MalformedPayload) as again:
        ex.finish()
    assert (first.value.reason, first.value.offset) == (again.value.reason, again.value.offset)


def test_abandoned_extractor_is_wiped_and_its_scratch_reused() -> None:
    payload = cbor2.dumps({"privateKey": "secret-key-material", "certificateId": "id"})
    ex = CombinedExtractor("cbor")
    ex.feed(payload[:-3])  # the key is in the block; the message never finishes
    scratch = ex._scratch
    assert scratch is not None and b"secret-key-material" in bytes(scratch.view)
    del ex  # CPython: __del__ runs now
    assert not any(scratch.view)
    assert scratch in mod._load().pool


def test_a_refused_wipe_is_an_error_and_the_block_is_zeroed_anyway(caplog: pytest.LogCaptureFixture) -> None:
    # The wrapper checks nrfprov_wipe's status like every other call: a state the library no longer
    # recognises (stale build, corruption) must not leave key bytes behind or pass silently.
    payload = json.dumps({"privateKey": "secret-key-material", "certificateId": "id"}).encode()
    ex = CombinedExtractor("json")
    ex.feed(payload[:-2])
    scratch = ex._scratch
    assert scratch is not None and b"secret-key-material" in bytes(scratch.view)
    scratch.state.size_check = 0
    with pytest.raises(MalformedPayload, match="refused to wipe") as info:
        ex.finish()
    assert info.value.reason == "NRFPROV_E_ARG" and not any(scratch.view)
    del info, ex  # the finaliser meets the same refusal: logged (nobody to raise to), block still zero
    gc.collect()  # the raised error's traceback holds ex in a reference cycle
    assert "refused to wipe" in caplog.text and not any(scratch.view)
    assert scratch in mod._load().pool and extract_message(b'{"errorCode":"E"}') == ExtractedMessage(error_code="E")


def test_finished_extractor_gives_its_scratch_back() -> None:
    ex = CombinedExtractor("json")
    scratch = ex._scratch
    ex.feed(b'{"errorCode":"E"}')
    assert ex.finish() == ExtractedMessage(error_code="E")
    assert scratch in mod._load().pool and not any(scratch.view)
    for late in (lambda: ex.feed(b" "), ex.finish):  # as before the pool: the C's NRFPROV_E_STATE
        with pytest.raises(MalformedPayload) as info:
            late()
        assert (info.value.reason, info.value.offset, info.value.field) == ("NRFPROV_E_STATE", None, None)
    assert extract_message(b'{"errorCode":"F"}') == ExtractedMessage(error_code="F")  # reuse is harmless


def test_built_message_is_an_ordinary_extracted_message() -> None:
    doc = {"statusCode": -7, "errorCode": "E", "certificateId": "c" * 64}
    got = extract_message(json.dumps(doc).encode())
    want = ExtractedMessage(status_code=-7, error_code="E", certificate_id="c" * 64)
    assert vars(got) == vars(want) and hash(got) == hash(want) and repr(got) == repr(want)
    with pytest.raises(AttributeError):  # still frozen
        got.private_key = "x"  # type: ignore[misc]


def test_threads_never_share_a_scratch_set() -> None:
    # cffi releases the GIL during the C call, so two threads on one scratch set would mix fields.
    rnd = random.Random(7)
    docs = [
        {"certificateId": f"{i:064x}", "privateKey": rnd.randbytes(rnd.randrange(10, 900)).hex(), "n": i}
        for i in range(40)
    ]
    cases = [(json.dumps(d).encode(), "json", d) for d in docs] + [(cbor2.dumps(d), "cbor", d) for d in docs]
    failures: list[str] = []
    start = threading.Barrier(4)

    def work(offset: int) -> None:
        start.wait(timeout=10)
        for k in range(300):
            payload, fmt, doc = cases[(offset + k * 7) % len(cases)]
            msg = extract_message(payload, fmt)  # type: ignore[arg-type]
            if (msg.certificate_id, msg.private_key) != (doc["certificateId"], doc["privateKey"]):
                failures.append(f"thread {offset}, message {k}")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert len(mod._load().pool) <= mod._POOL_LIMIT + 3 and pool_blocks_are_zero()


def test_c_api_result_wipe_and_extract_arguments() -> None:
    import nrfprov._native as native

    ffi, lib = native.ffi, native.lib
    ex = ffi.new("struct nrfprov_extractor *")  # zeroed: not initialised
    res = ffi.new("struct nrfprov_result *")
    block = ffi.new("uint8_t[]", lib.NRFPROV_ALL_FIELDS_SIZE)
    size = ffi.sizeof(ex[0])
    assert lib.nrfprov_result(ex, res) == lib.NRFPROV_E_ARG
    assert lib.nrfprov_wipe(ex) == lib.NRFPROV_E_ARG and lib.nrfprov_wipe(ffi.NULL) == lib.NRFPROV_E_ARG
    msg = b'{"errorCode":"E","statusCode":7,"certificateId":"id"}'
    assert lib.nrfprov_extract(ex, size, lib.NRFPROV_FORMAT_JSON, block, 11456, msg, len(msg), ffi.NULL) == -1
    assert lib.nrfprov_extract(ex, size - 1, lib.NRFPROV_FORMAT_JSON, block, 11456, msg, len(msg), res) == -1
    assert lib.nrfprov_extract(ex, size, lib.NRFPROV_FORMAT_JSON, block, 11455, msg, len(msg), res) == -1
    assert lib.nrfprov_extract(ex, size, lib.NRFPROV_FORMAT_JSON, block, 11456, msg, len(msg), res) == 0
    assert (res.status, res.present, res.status_code) == (0, lib.nrfprov_present_mask(ex), 7)
    assert list(res.len) == [2, 0, 0, 0, 1, 0]
    error_code_at = 64 + 4096 + 4096 + 2048
    assert bytes(ffi.buffer(block, 2)) == b"id" and bytes(ffi.buffer(block + error_code_at, 1)) == b"E"
    assert lib.nrfprov_result(ex, ffi.NULL) == lib.NRFPROV_E_ARG
    assert lib.nrfprov_wipe(ex) == lib.NRFPROV_OK
    assert not any(bytes(ffi.buffer(block)))
    assert lib.nrfprov_result(ex, res) == 0 and list(res.len) == [2, 0, 0, 0, 1, 0]  # results survive
    bad = b'{"certificateId":"abc",'
    assert lib.nrfprov_extract(ex, size, lib.NRFPROV_FORMAT_JSON, block, 11456, bad, len(bad), res) == -4
    assert (res.status, lib.nrfprov_error_offset(ex)) == (-4, len(bad))
    assert bytes(ffi.buffer(block, 3)) == b"abc"
    assert lib.nrfprov_wipe(ex) == 0 and not any(bytes(ffi.buffer(block)))
