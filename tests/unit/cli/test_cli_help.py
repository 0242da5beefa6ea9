"""``nrfprov --help`` builds every parser without loading the rooms the handlers drive."""

from __future__ import annotations

import subprocess
import sys

ROOMS = ("at", "modem", "transport", "mqtt", "provisioning", "station", "aws", "sim", "cloud", "extractor")
HEAVY = ("serial", "mbedtls", "paho", "cryptography", "cbor2", "rich")

PROBE = """
import sys
from nrfprov.cli import build_parser
build_parser().format_help()
print("\\n".join(sorted(sys.modules)))
"""


def test_building_the_parser_imports_no_room_and_no_heavy_library() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    loaded = set(out.stdout.split())
    assert "nrfprov.cli.provision" in loaded and "nrfprov.cli.cloud" in loaded  # the probe saw the parsers
    rooms = sorted(m for m in loaded if m.split(".")[:2][-1] in ROOMS and m.startswith("nrfprov."))
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not rooms, f"--help imports rooms below cli/: {rooms}"
    assert not heavy, f"--help imports heavy libraries: {heavy}"
