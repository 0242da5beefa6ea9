"""The C itself: strict C99, no globals, no I/O, a header cffi can parse; sanitizer and fuzz runs."""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
NATIVE = ROOT / "native"
SOURCES = sorted((NATIVE / "src").glob("*.c"))
CC = os.environ.get("CC", "cc")
# The only library calls the core may make (string.h); anything else would be I/O or allocation.
ALLOWED_UNDEFINED = {"memset", "memcmp", "memcpy", "memmove", "strlen"}


def _build_ffi_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nrfprov_build_ffi", NATIVE / "build_ffi.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _corpus(tmp_path: Path) -> Path:
    spec = importlib.util.spec_from_file_location("nrfprov_make_corpus", NATIVE / "test" / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    seeds = tmp_path / "seeds"
    assert module.main(["make_corpus.py", str(seeds)]) == 0
    return seeds


def test_sources_are_strict_c99_with_no_globals_and_no_io(tmp_path: Path) -> None:
    assert SOURCES, "no C sources found"
    defined: set[str] = set()
    undefined: dict[str, str] = {}
    for src in SOURCES:
        obj = tmp_path / (src.stem + ".o")
        subprocess.run(
            [CC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Wconversion", "-Wshadow", "-Werror",
             "-O2", "-I", str(NATIVE / "include"), "-c", str(src), "-o", str(obj)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        symbols = subprocess.run(["nm", "-P", str(obj)], check=True, capture_output=True, text=True).stdout
        for line in symbols.splitlines():
            name, kind = line.split()[:2]
            assert kind not in "DdBbCGgSs", f"{src.name}: writable global {name} ({kind})"
            if kind == "U":
                undefined[name] = src.name
            elif kind == "T":
                assert name.startswith("nrfprov_"), f"{src.name} exports {name} outside the nrfprov_ namespace"
                defined.add(name)
    for name, where in undefined.items():
        assert name in defined or name in ALLOWED_UNDEFINED, f"{where} calls {name}: no I/O or allocation allowed"


def test_header_is_its_own_cdef() -> None:
    cdef = _build_ffi_module().cdef_text()
    assert "nrfprov_feed" in cdef and "struct nrfprov_extractor {" in cdef
    for line in cdef.splitlines():
        assert not line.strip().startswith("#") or line.strip().startswith("#define NRFPROV_")


def test_header_is_usable_from_firmware_c(tmp_path: Path) -> None:
    src = tmp_path / "use.c"
    src.write_text('#include "nrfprov_core.h"\nint main(void) { struct nrfprov_extractor ex; '
                   "return nrfprov_init(&ex, sizeof ex, NRFPROV_FORMAT_JSON); }\n")  # fmt: skip
    subprocess.run(
        [
            CC,
            "-std=c99",
            "-Wall",
            "-Werror",
            "-I",
            str(NATIVE / "include"),
            "-c",
            str(src),
            "-o",
            str(tmp_path / "u.o"),
        ],
        check=True,
    )


def test_loaded_extension_is_the_requested_build() -> None:
    import nrfprov._native as native  # type: ignore[import-not-found]

    wanted = os.environ.get("NRFPROV_NATIVE_SO")
    if wanted:
        assert Path(native.__file__).resolve() == Path(wanted).resolve()
    assert native.lib.nrfprov_version() == native.lib.NRFPROV_CORE_VERSION


@pytest.mark.slow
def test_sanitizer_driver_runs_clean(tmp_path: Path) -> None:
    """The C under ASan + UBSan: seeds and mutations, whole / chunked / byte-wise (make sanitize: longer)."""
    driver = tmp_path / "sanitize_driver"
    subprocess.run(
        [CC, "-std=c99", "-g", "-O1", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=all", "-I", str(NATIVE / "include"), *map(str, SOURCES),
         str(NATIVE / "test" / "sanitize_driver.c"), "-o", str(driver)],
        check=True,
    )  # fmt: skip
    seeds = sorted(_corpus(tmp_path).iterdir())
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0", UBSAN_OPTIONS="halt_on_error=1")
    env.pop("LD_PRELOAD", None)
    run = subprocess.run(
        [str(driver), "-n", "150", *map(str, seeds)], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "clean" in run.stdout


@pytest.mark.slow
def test_short_fuzz_run(tmp_path: Path) -> None:
    """A few seconds of atheris, json/cbor2 as oracle, C comparisons as feedback (make fuzz: minutes)."""
    if not (sys.platform == "linux" and platform.machine() == "x86_64"):
        pytest.skip("atheris wheels (dev extra) exist for Linux x86_64 only")
    seeds = _corpus(tmp_path)
    work = tmp_path / "corpus"
    work.mkdir()
    env = dict(os.environ, NRFPROV_NATIVE_CFLAGS="-fsanitize-coverage=trace-cmp")
    env.pop("LD_PRELOAD", None)
    subprocess.run(
        [sys.executable, str(NATIVE / "build_ffi.py"), str(tmp_path / "cmp")], env=env, check=True, capture_output=True
    )
    (traced,) = (tmp_path / "cmp" / "nrfprov").glob("_native*.so")
    env["NRFPROV_NATIVE_SO"] = str(traced)
    run = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("fuzz_extractor.py")), str(work), str(seeds),
         "-use_value_profile=1", "-max_total_time=3", "-max_len=8192", f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    assert "Done" in run.stderr
    assert not list(tmp_path.glob("crash-*"))
    # The C comparisons reached libFuzzer: far more features than the wrapper's ~100 Python edges.
    features = [int(m) for m in re.findall(r" ft: (\d+)", run.stderr)]
    assert features and max(features) > 400, run.stderr[-2000:]
