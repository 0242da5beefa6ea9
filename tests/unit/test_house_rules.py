"""House rule 1 and the independent-witness rule, checked by walking imports (AST, not runtime)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "nrfprov"
SANS_IO_ROOMS = ["at", "provisioning"]
SANS_IO_EXEMPT = {"provisioning/driver.py", "provisioning/cli.py", "provisioning/demo.py", "provisioning/journal.py"}
FORBIDDEN_IN_CORE = {"serial", "socket", "threading", "time", "select", "asyncio"}
WITNESSES = ["sim", "cloud"]
CLIENT_LAYERS = {"nrfprov.at", "nrfprov.modem", "nrfprov.transport", "nrfprov.mqtt", "nrfprov.provisioning"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _files(room: str) -> list[Path]:
    return sorted((SRC / room).rglob("*.py"))


@pytest.mark.parametrize("room", SANS_IO_ROOMS)
def test_sans_io_cores_import_no_io(room: str) -> None:
    bad = []
    for f in _files(room):
        if str(f.relative_to(SRC)) in SANS_IO_EXEMPT:
            continue
        hits = {n for n in _imports(f) if n.split(".")[0] in FORBIDDEN_IN_CORE}
        if hits:
            bad.append(f"{f.relative_to(SRC)}: {sorted(hits)}")
    assert not bad, "sans-IO core imports I/O or a clock: " + "; ".join(bad)


@pytest.mark.parametrize("room", WITNESSES)
def test_stand_ins_do_not_import_client_layers(room: str) -> None:
    bad = []
    for f in _files(room):
        hits = {n for n in _imports(f) if any(n == c or n.startswith(c + ".") for c in CLIENT_LAYERS)}
        if hits:
            bad.append(f"{f.relative_to(SRC)}: {sorted(hits)}")
    assert not bad, "a stand-in imports the client it witnesses: " + "; ".join(bad)


def test_the_walk_is_not_vacuous() -> None:
    # The tests above would pass on an empty or moved tree, or with a walker that sees no imports.
    assert (SRC / "config.py").exists()
    assert "time" in _imports(Path(__file__).parent / "_probe_imports.py")
    assert "nrfprov.errors" in _imports(SRC / "config.py")
