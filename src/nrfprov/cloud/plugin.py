"""Build (once) and locate the stand-in's mosquitto plugin, ``broker_plugin.c``.

Why it is compiled on first use and not when nrfprov is installed: the plugin is C against
mosquitto's plugin headers (``mosquitto-dev``, ``libmosquitto-dev``) and OpenSSL's (``libssl-dev``),
which only the stand-in needs. Building it in ``setup.py`` would make every ``pip install nrfprov``
(most users provision real modems and never start a stand-in) fail without those headers; shipping a
binary would tie the wheel to one mosquitto build. So the source is package data, and the first
``LocalAwsIot.start()`` / ``nrfprov cloud up`` compiles it with the system C compiler into a user cache,
``$XDG_CACHE_HOME/nrfprov/broker-plugin/<key>/`` (``~/.cache/...``), where ``<key>`` hashes the
source, the compiler command and the mosquitto headers: a changed source or a new mosquitto gets a
fresh build, an unchanged one costs a hash (~1 ms). ``make setup`` builds it too, so ``make test``
never pays the compile (~0.3 s) inside a test. The build writes to a temporary file and renames it
into place, so concurrent first starts are safe.

``NRFPROV_BROKER_PLUGIN=/path/to/plugin.so`` uses a prebuilt plugin instead (``make sanitize`` points it
at an AddressSanitizer build). ``CC`` picks the compiler (default ``cc``).

Missing headers or compiler raise ``ConfigError`` naming the Debian packages to install.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from nrfprov.errors import ConfigError

log = logging.getLogger(__name__)

SOURCE_NAME = "broker_plugin.c"
LIBRARY_NAME = "nrfprov_broker_plugin.so"
# Built like native/: C99, every warning an error.
CFLAGS = ("-std=c99", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-Wpedantic", "-Wshadow", "-Wconversion",
          "-fPIC", "-shared")
LIBS = ("-lcrypto",)
HEADERS = ("mosquitto_broker.h", "mosquitto_plugin.h", "mosquitto.h", "mqtt_protocol.h", "openssl/x509.h")
APT_HINT = ("install the headers the stand-in's broker plugin is built against: "
            "apt-get install mosquitto-dev libmosquitto-dev libssl-dev (Debian/Ubuntu)")
BUILD_TIMEOUT_S = 120.0
ENV_PREBUILT = "NRFPROV_BROKER_PLUGIN"


def source() -> bytes:
    return resources.files("nrfprov.cloud").joinpath(SOURCE_NAME).read_bytes()


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nrfprov" / "broker-plugin"


def _compiler() -> list[str]:
    cc = shlex.split(os.environ.get("CC") or "cc")
    if not cc or shutil.which(cc[0]) is None:
        raise ConfigError(
            f"no C compiler ({' '.join(cc) or 'cc'}) to build the stand-in's mosquitto plugin",
            hint="install one (apt-get install gcc) or set CC",
        )
    return cc


def _header_bytes() -> bytes:
    """The mosquitto/OpenSSL headers in the default include path, so a new mosquitto means a new build."""
    out = b""
    for name in HEADERS:
        path = Path("/usr/include") / name
        if path.is_file():
            out += name.encode() + b"\0" + path.read_bytes()
    return out


def build_key(src: bytes, cc: list[str]) -> str:
    h = hashlib.sha256()
    for part in (src, " ".join(cc).encode(), " ".join(CFLAGS + LIBS).encode(), _header_bytes()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:20]


def compile_plugin(src_path: Path, out: Path, cc: list[str], extra_cflags: tuple[str, ...] = ()) -> None:
    """Compile ``src_path`` into ``out`` (atomically); ConfigError with the compiler's words on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out.parent)
    os.close(fd)
    cmd = [*cc, *CFLAGS, *extra_cflags, "-o", tmp, str(src_path), *LIBS]
    try:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"building the stand-in's mosquitto plugin failed: {exc}", hint=APT_HINT) from exc
        if done.returncode != 0:
            err = done.stderr.strip()
            missing = [h for h in HEADERS if f"{h}: No such file" in err]
            hint = APT_HINT if missing else f"compiler command: {shlex.join(cmd)}"
            what = f"missing {', '.join(missing)}" if missing else err[-600:]
            raise ConfigError(f"cannot build the stand-in's mosquitto plugin ({what})", hint=hint)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def ensure_plugin() -> Path:
    """The path of a built plugin for this source and this mosquitto, building it if needed."""
    prebuilt = os.environ.get(ENV_PREBUILT)
    if prebuilt:
        path = Path(prebuilt)
        if not path.is_file():
            raise ConfigError(f"{ENV_PREBUILT}={prebuilt} does not name a file",
                              hint=f"unset {ENV_PREBUILT} to build the plugin from source")
        return path
    src = source()
    cc = _compiler()
    out = cache_root() / build_key(src, cc) / LIBRARY_NAME
    if out.is_file():
        return out
    log.info("building the stand-in's mosquitto plugin into %s", out)
    with tempfile.TemporaryDirectory(prefix="nrfprov-plugin-") as tmp:
        src_path = Path(tmp) / SOURCE_NAME
        src_path.write_bytes(src)
        compile_plugin(src_path, out, cc)
    return out


def main() -> int:
    """Build (if needed) and print the plugin's path; ``make setup`` calls it."""
    try:
        print(ensure_plugin())
    except ConfigError as exc:
        print(f"nrfprov: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
