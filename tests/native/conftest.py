"""tests/native: optional swap of the extension for a sanitizer build.

``make sanitize`` builds an ASan + UBSan copy of the extension outside the source tree and runs these
tests against it by setting ``NRFPROV_NATIVE_SO`` (with libasan preloaded into the interpreter).
Without the variable the installed ``nrfprov._native`` is used.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import nrfprov


def _load_alternative_native(path: str) -> None:
    spec = importlib.util.spec_from_file_location("nrfprov._native", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"NRFPROV_NATIVE_SO={path!r} is not a loadable extension module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["nrfprov._native"] = module
    nrfprov._native = module  # type: ignore[attr-defined]


if os.environ.get("NRFPROV_NATIVE_SO"):
    _load_alternative_native(os.environ["NRFPROV_NATIVE_SO"])
