"""P5: the native extractor against json.loads / cbor2.loads + field pick, 4.5 KB .. 128 KB.

Each document is a realistic CreateKeysAndCertificate reply (64-hex id, ~1.2 KB certificate, ~1.7 KB
RSA key, ownership token) padded with an unknown nested field to the target size, so the extractor
must validate and skip everything else. Both sides return the same ExtractedMessage. The C side also
runs with 2048-byte chunks (a device's receive buffer; suite ``p5_stream``, reported, not paired).

    .venv/bin/python -m pytest benchmarks/test_p5_extractor.py --benchmark-only

extra_info carries suite/impl/format/size (benchmarks/README.md conventions) and the C state size.
"""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import cbor2
import pytest

from nrfprov.extractor import CombinedExtractor, ExtractedMessage, extract_message, state_size

SIZES = [4608, 16384, 65536, 131072]  # 4.5 KB .. the 128 KB AWS IoT payload limit
FORMATS = ["json", "cbor"]
DEVICE_CHUNK = 2048  # the nRF91 secure-socket receive limit is ~2 KB [sdk-nrf PR #20182]

_FIELDS = {
    "certificateId": "certificate_id",
    "certificatePem": "certificate_pem",
    "privateKey": "private_key",
    "certificateOwnershipToken": "ownership_token",
    "errorCode": "error_code",
    "errorMessage": "error_message",
}


def _pem(kind: str, der_len: int, rnd: random.Random) -> str:
    body = base64.b64encode(rnd.randbytes(der_len)).decode()
    return (
        f"-----BEGIN {kind}-----\n"
        + "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
        + (f"\n-----END {kind}-----\n")
    )


def document(size: int, fmt: str) -> bytes:
    """A reply of exactly ``size`` bytes."""
    rnd = random.Random(size)
    doc: dict[str, Any] = {
        "certificateId": rnd.randbytes(32).hex(),
        "certificatePem": _pem("CERTIFICATE", 862, rnd),
        "privateKey": _pem("RSA PRIVATE KEY", 1192, rnd),
        "certificateOwnershipToken": base64.b64encode(rnd.randbytes(330)).decode(),
    }
    pad: dict[str, Any] = {}
    doc["deviceConfiguration"] = pad
    dump = (lambda d: json.dumps(d).encode()) if fmt == "json" else cbor2.dumps
    i = 0
    while len(dump(doc)) < size - 200:
        pad[f"k{i:05d}"] = {"n": i, "on": i % 2 == 0, "v": rnd.randbytes(24).hex()}
        i += 1
    pad["fill"] = ""
    while len(dump(doc)) < size:
        pad["fill"] += "x" * max(1, (size - len(dump(doc))))
    while len(dump(doc)) > size:
        pad["fill"] = pad["fill"][:-1]
    data = dump(doc)
    assert len(data) == size, (len(data), size)
    return data


def reference(payload: bytes, fmt: str) -> ExtractedMessage:
    obj = json.loads(payload) if fmt == "json" else cbor2.loads(payload)
    values: dict[str, Any] = {attr: obj[name] for name, attr in _FIELDS.items() if name in obj}
    if "statusCode" in obj:
        values["status_code"] = obj["statusCode"]
    return ExtractedMessage(**values)


def streamed(payload: bytes, fmt: str) -> ExtractedMessage:
    ex = CombinedExtractor(fmt)  # type: ignore[arg-type]
    view = memoryview(payload)
    for i in range(0, len(payload), DEVICE_CHUNK):
        ex.feed(view[i : i + DEVICE_CHUNK])
    return ex.finish()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("impl", ["c", "python"])
def test_p5_extract(benchmark: Any, impl: str, format: str, size: int) -> None:
    payload = document(size, format)
    want = reference(payload, format)
    benchmark.extra_info.update(suite="p5", impl=impl, format=format, size=size)
    if impl == "c":
        benchmark.extra_info["state_size"] = state_size()
        got = benchmark(extract_message, payload, format)
    else:
        got = benchmark(reference, payload, format)
    assert got == want and got.private_key is not None


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("format", FORMATS)
def test_p5_stream_device_chunks(benchmark: Any, format: str, size: int) -> None:
    payload = document(size, format)
    benchmark.extra_info.update(
        suite="p5_stream", impl="c", format=format, size=size, chunk=DEVICE_CHUNK, state_size=state_size()
    )
    assert benchmark(streamed, payload, format) == reference(payload, format)
