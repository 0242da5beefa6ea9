"""atheris (libFuzzer) harness for the native extractor, with json / cbor2 as the oracle.

    python tests/native/fuzz_extractor.py CORPUS_DIR [SEED_DIR...] -max_total_time=300

Every input is parsed as JSON and as CBOR, whole and in chunks; the harness fails (a libFuzzer
crash report + a crash-* file) when:
  * anything but nrfprov.errors.PayloadError escapes the wrapper;
  * whole and chunked parsing disagree (fields, or error kind and offset);
  * the extractor accepts an input the reference refuses, or returns different fields.

Coverage feedback: atheris instruments the Python wrapper; the C core is compiled by gcc without
libFuzzer's coverage hooks (they need clang), so inside C the search is guided by the oracle and
libFuzzer's mutators, not by C branch coverage. `make sanitize` runs the C itself under ASan/UBSan.
"""

from __future__ import annotations

import sys
from typing import Any

import atheris

with atheris.instrument_imports():
    from nrfprov.errors import PayloadError
    from nrfprov.extractor import CombinedExtractor, ExtractedMessage

import json

from native_docs import cbor_loads_plain

sys.set_int_max_str_digits(0)  # the extractor skips numbers of any length; let json do too

_STRING_FIELDS = {
    "certificateId": "certificate_id",
    "certificatePem": "certificate_pem",
    "privateKey": "private_key",
    "certificateOwnershipToken": "ownership_token",
    "errorCode": "error_code",
    "errorMessage": "error_message",
}


def _reference(payload: bytes, fmt: str) -> ExtractedMessage | None:
    try:
        obj = json.loads(payload) if fmt == "json" else cbor_loads_plain(payload)
    except Exception:
        return None
    if not isinstance(obj, dict):
        return None
    values: dict[str, Any] = {}
    for name, attr in _STRING_FIELDS.items():
        if name in obj:
            if not isinstance(obj[name], str):
                return None
            values[attr] = obj[name]
    if "statusCode" in obj:
        if type(obj["statusCode"]) is not int:
            return None
        values["status_code"] = obj["statusCode"]
    return ExtractedMessage(**values)


def _outcome(payload: bytes, fmt: str, step: int) -> Any:
    ex = CombinedExtractor(fmt)  # type: ignore[arg-type]
    try:
        for i in range(0, len(payload), step):
            ex.feed(payload[i : i + step])
        return ex.finish()
    except PayloadError as exc:
        return (type(exc).__name__, getattr(exc, "reason", None), exc.offset)


def test_one_input(data: bytes) -> None:
    if len(data) > 140_000:
        return
    step = 1 + (data[-1] % 61 if data else 0)
    for fmt in ("json", "cbor"):
        whole = _outcome(data, fmt, max(1, len(data)))
        chunked = _outcome(data, fmt, step)
        if whole != chunked:
            raise AssertionError(f"{fmt}: whole {whole!r} != chunked(step {step}) {chunked!r}")
        if isinstance(whole, ExtractedMessage):
            ref = _reference(data, fmt)
            if ref != whole:
                raise AssertionError(f"{fmt}: extractor {whole!r} but reference {ref!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
