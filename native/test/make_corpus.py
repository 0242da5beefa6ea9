"""Write seed inputs for the sanitizer driver and the fuzzer: ``python make_corpus.py DIR``.

Replies of realistic shape and size (~3.5 KB CreateKeysAndCertificate replies: aws/amazon-freertos
#3180) in JSON and CBOR, rejected replies, escape-heavy and deeply nested documents, CBOR indefinite
lengths, tags and floats, plus a few broken ones. Deterministic (fixed random seed), so a failure found
with the corpus reproduces.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import sys
from pathlib import Path

import cbor2


def pem(kind: str, der_len: int, rnd: random.Random) -> str:
    body = base64.b64encode(rnd.randbytes(der_len)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def seeds(rnd: random.Random) -> dict[str, bytes]:
    accepted = {
        "certificateId": "".join(rnd.choice("0123456789abcdef") for _ in range(64)),
        "certificatePem": pem("CERTIFICATE", 862, rnd),
        "privateKey": pem("RSA PRIVATE KEY", 1192, rnd),
        "certificateOwnershipToken": base64.b64encode(rnd.randbytes(330)).decode(),
    }
    csr = {k: v for k, v in accepted.items() if k != "privateKey"}
    rejected = {
        "statusCode": 400,
        "errorCode": "InvalidCertificateOwnershipToken",
        "errorMessage": "Certificate ownership token cannot be empty.",
    }
    noisy = dict(
        accepted,
        extra={"nested": [1, -2.5e10, None, True, False, {"privateKey": ["x"]}], "s": "\u00e9\u20ac\U0001f600"},
        numbers=[0, -0.0, 1e308, 123456789012345678901234567890],
    )
    out: dict[str, bytes] = {
        "accepted.json": json.dumps(accepted).encode(),
        "accepted_indent.json": json.dumps(accepted, indent=4).encode(),
        "csr.json": json.dumps(csr).encode(),
        "rejected.json": json.dumps(rejected).encode(),
        "noisy.json": json.dumps(noisy, ensure_ascii=False).encode(),
        "escapes.json": json.dumps({"errorMessage": '\n/"\\\b\f\r\t\u0000\u00e9\U0001f600'}).encode(),
        "escapes_raw.json": b'{"errorMessage":"\\/\\u20AC\\ud83d\\ude00 \\uDBFF\\uDFFF"}',
        "deep.json": b'{"a":' + b"[" * 31 + b"]" * 31 + b"}",
        "too_deep.json": b'{"a":' + b"[" * 40 + b"]" * 40 + b"}",
        "lone_surrogate.json": b'{"errorCode":"\\ud800x"}',
        "duplicate.json": b'{"privateKey":"a","privateKey":"b"}',
        "truncated.json": json.dumps(accepted).encode()[:1000],
        "accepted.cbor": cbor2.dumps(accepted),
        "csr.cbor": cbor2.dumps(csr),
        "rejected.cbor": cbor2.dumps(rejected),
        "noisy.cbor": cbor2.dumps(dict(noisy, tagged=cbor2.CBORTag(1234, [1.5, b"\x00\x01"]))),
        "indefinite.cbor": (
            b"\xbf\x7f\x64cert\x69ificateId\xff\x7f\x62ab\x60\x62cd\xff"
            b"\x63pad\x9f\x5f\x41\x00\xff\xbf\xff\xf9\x3c\x00\xfa\x3f\x80\x00\x00\xf8\x20\xff"
            b"\x6astatusCode\x39\x01\x8f\xff"
        ),
        "wide_heads.cbor": b"\xba\x00\x00\x00\x01\x7b\x00\x00\x00\x00\x00\x00\x00\x09errorCode" + b"\x79\x00\x01E",
        "float16.cbor": b"\xa1\x61f" + b"\xf9" + struct.pack(">e", 1.5),
        "reserved.cbor": b"\xa1\x61a\x1c",
    }
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: make_corpus.py DIR", file=sys.stderr)
        return 2
    target = Path(argv[1])
    target.mkdir(parents=True, exist_ok=True)
    for name, data in seeds(random.Random(20240607)).items():
        (target / name).write_bytes(data)
    print(f"make_corpus: wrote {len(list(target.iterdir()))} seeds to {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
