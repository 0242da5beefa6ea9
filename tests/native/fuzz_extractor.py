"""atheris (libFuzzer) harness for the native extractor, with json / cbor2 as the oracle.

    python tests/native/fuzz_extractor.py CORPUS_DIR [SEED_DIR...] -max_total_time=300

Every input is parsed as JSON and as CBOR, whole and in chunks; the harness fails (a libFuzzer
crash report + a crash-* file) when:
  * anything but nrfprov.errors.PayloadError escapes the wrapper;
  * whole and chunked parsing disagree (fields, or error kind and offset);
  * the extractor accepts an input the reference refuses, or returns different fields.

Coverage feedback: atheris instruments the Python wrapper. For the C core, gcc has no libFuzzer
edge coverage (that needs clang), but it has -fsanitize-coverage=trace-cmp: `make fuzz` builds such a
copy of the extension, sets NRFPROV_NATIVE_SO to it and runs with -use_value_profile=1, so every
comparison in the C state machines feeds libFuzzer. Without the variable the installed extension is
fuzzed with Python-level feedback only (the short run inside the test suite). `make sanitize` runs
the C itself under ASan/UBSan.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import atheris


def _use_cmp_traced_native(path: str) -> None:
    """Load an extension built with gcc -fsanitize-coverage=trace-cmp (make fuzz does) as nrfprov._native.

    Its __sanitizer_cov_trace_*cmp* calls resolve against the libFuzzer inside atheris, which must be
    made global first; with -use_value_profile=1 libFuzzer then treats the C comparisons as coverage.
    """
    import ctypes
    import importlib.util
    from pathlib import Path

    # atheris loads its libFuzzer core privately (RTLD_LOCAL) once fuzzing starts; RTLD_NOLOAD
    # promotes that very copy to global so the extension's trace hooks bind to it.
    maps = Path("/proc/self/maps").read_text().split()
    core = next(p for p in maps if "core_with_libfuzzer" in p)
    ctypes.CDLL(core, mode=ctypes.RTLD_GLOBAL | os.RTLD_NOLOAD)
    spec = importlib.util.spec_from_file_location("nrfprov._native", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["nrfprov._native"] = module


with atheris.instrument_imports(include=["nrfprov"]):
    from nrfprov.errors import PayloadError
    from nrfprov.extractor import CombinedExtractor, ExtractedMessage

import json  # noqa: E402

from native_docs import cbor_loads_plain  # noqa: E402

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


_loaded: list[bool] = []


def test_one_input(data: bytes) -> None:
    if not _loaded:  # first call: libFuzzer is running now
        _loaded.append(True)
        if os.environ.get("NRFPROV_NATIVE_SO"):
            _use_cmp_traced_native(os.environ["NRFPROV_NATIVE_SO"])
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
