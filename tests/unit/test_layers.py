"""The layer order and the sans-IO cores, checked by reading every import (AST, not runtime).

Layer order (docs/architecture.md, "Layers"): at < modem < transport < mqtt < provisioning < station < cli.
A room may import the neutral base modules at the top of the package and any room below it, never
one above; cli/, the wiring on top, may also import aws/, sim/ and cloud/. aws/ imports no device
layer. The stand-ins sim/ and cloud/ are independent witnesses: they import only the neutral
helpers (cloud/ may also import the aws/ handler it hosts). An unclassified new room fails the test until it
is given a place here.

Imports are read everywhere in a file (inside functions too: a lazy import is still a dependency),
relative imports are resolved against the file's package, and the sans-IO cores may neither import
I/O, threads or the clock nor call ``open()`` or a ``Path`` I/O method.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "nrfprov"

LAYERS = ["at", "modem", "transport", "mqtt", "provisioning", "station", "cli"]
#: Top-level modules every room may import: the exception tree, domain names, paths, configuration,
#: AWS IoT Core facts, the extractor's Python face, bounded file reads, port/folder locks, signal handling
#: (``__main__`` is the entry point: it sits above cli).
BASE = {"errors", "names", "paths", "config", "iotcore", "extractor", "files", "locks", "interrupts", "__init__"}
#: What an independent witness may share with the client: nothing that parses or decides.
NEUTRAL = {"nrfprov", "nrfprov.errors", "nrfprov.names", "nrfprov.paths"}
DEVICE_LAYERS = ["at", "modem", "transport", "mqtt", "provisioning", "station", "sim", "cloud", "cli"]
WITNESSES = ["sim", "cloud"]
CLOUD_MAY_ALSO_IMPORT = "nrfprov.aws.handler"  # the Lambda handler the stand-in hosts, as AWS would
OTHER_FOLDERS = {"data", "__pycache__"}  # not code

SANS_IO_ROOMS = ["at", "provisioning"]
#: The shells of the provisioning room: they own the disk, the clock and the modem.
SANS_IO_EXEMPT = {"provisioning/driver.py", "provisioning/journal.py", "provisioning/cas.py",
                  "provisioning/inputs.py"}
FORBIDDEN_IN_CORE = {"serial", "socket", "threading", "time", "select", "asyncio", "os", "subprocess", "shutil",
                     "tempfile", "io"}
PATH_IO_METHODS = {"read_text", "write_text", "read_bytes", "write_bytes", "open", "mkdir", "unlink", "touch",
                   "iterdir", "is_file", "is_dir", "exists", "stat"}  # (not replace: str.replace is pure)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Absolute names of every module ``source`` imports; relative imports resolved against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                if node.module:
                    names.add(".".join([*base, node.module]))
                else:  # "from . import x": the module x of that package
                    names.update(".".join([*base, a.name]) for a in node.names)
            elif node.module:
                names.add(node.module)
    return names


def io_calls_of(source: str) -> set[str]:
    """``open(...)`` and ``<something>.<Path I/O method>(...)`` calls."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "open":
                found.add("open()")
            elif isinstance(node.func, ast.Attribute) and node.func.attr in PATH_IO_METHODS:
                found.add(f".{node.func.attr}()")
    return found


def _files(room: str) -> list[Path]:
    return sorted((SRC / room).rglob("*.py")) if (SRC / room).is_dir() else []


def _imports(path: Path) -> set[str]:
    return imports_of(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def _room_of(name: str) -> str | None:
    """``nrfprov.<room>...`` -> room, ``nrfprov.<base module>`` -> "base", anything else -> None."""
    parts = name.split(".")
    if parts[0] != "nrfprov":
        return None
    if len(parts) == 1 or parts[1] in BASE:
        return "base"
    return parts[1]


def test_every_room_has_a_place() -> None:
    known = set(LAYERS) | {"aws"} | set(WITNESSES) | OTHER_FOLDERS
    folders = {p.name for p in SRC.iterdir() if p.is_dir()}
    modules = {p.stem for p in SRC.glob("*.py")} - {"__main__"}
    assert folders <= known, f"classify the new room(s) in test_layers.py: {sorted(folders - known)}"
    assert modules <= BASE, f"classify the new top-level module(s) in test_layers.py: {sorted(modules - BASE)}"


def test_base_modules_import_no_room() -> None:
    bad = []
    for f in sorted(SRC.glob("*.py")):
        if f.stem == "__main__":
            continue
        rooms = {_room_of(n) for n in _imports(f)} - {None, "base"}
        if rooms:
            bad.append(f"{f.name} imports {sorted(rooms)}")
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("room", LAYERS)
def test_no_layer_imports_a_layer_above_it(room: str) -> None:
    rank = LAYERS.index(room)
    allowed = {"base", *LAYERS[: rank + 1]}
    if room == "cli":  # the wiring room on top: it starts the stand-ins and the aws/ commands too
        allowed |= {"aws", *WITNESSES}
    bad = []
    for f in _files(room):
        for name in sorted(_imports(f)):
            target = _room_of(name)
            if target is not None and target not in allowed:
                bad.append(f"{f.relative_to(SRC)} imports {name}")
    assert not bad, f"{room} may import only {sorted(allowed)}: " + "; ".join(bad)


def test_aws_imports_no_device_layer() -> None:
    bad = [f"{f.relative_to(SRC)} imports {n}" for f in _files("aws") for n in sorted(_imports(f))
           if _room_of(n) in DEVICE_LAYERS]
    assert not bad, "; ".join(bad)


@pytest.mark.parametrize("room", WITNESSES)
def test_stand_ins_share_only_neutral_helpers(room: str) -> None:
    bad = []
    for f in _files(room):
        for name in sorted(_imports(f)):
            if _room_of(name) in (None, room) or name in NEUTRAL:
                continue
            if room == "cloud" and (name == CLOUD_MAY_ALSO_IMPORT or name.startswith(CLOUD_MAY_ALSO_IMPORT + ".")):
                continue
            bad.append(f"{f.relative_to(SRC)} imports {name}")
    assert not bad, "a stand-in imports what it witnesses: " + "; ".join(bad)


@pytest.mark.parametrize("room", SANS_IO_ROOMS)
def test_sans_io_cores_do_no_io(room: str) -> None:
    bad = []
    for f in _files(room):
        if str(f.relative_to(SRC)) in SANS_IO_EXEMPT:
            continue
        text = f.read_text()
        hits = {n for n in _imports(f) if n.split(".")[0] in FORBIDDEN_IN_CORE} | io_calls_of(text)
        if hits:
            bad.append(f"{f.relative_to(SRC)}: {sorted(hits)}")
    assert not bad, "sans-IO core does I/O or uses threads or the clock: " + "; ".join(bad)


def test_the_walk_is_not_vacuous() -> None:
    # The tests above would pass on an empty or moved tree, or with a walker that sees nothing.
    assert all((SRC / room).is_dir() for room in ("at", "modem", "transport", "mqtt", "provisioning", "cli"))
    assert "time" in imports_of((Path(__file__).parent / "_probe_imports.py").read_text(), "probe")
    assert "nrfprov.errors" in _imports(SRC / "config.py")
    assert "nrfprov.at" in _imports(SRC / "modem" / "facade.py")
    # relative imports, lazy imports and I/O calls are seen
    assert imports_of("from ..modem import Modem", "nrfprov.at.session") == {"nrfprov.modem"}
    assert imports_of("from . import flows", "nrfprov.provisioning.machine") == {"nrfprov.provisioning.flows"}
    assert imports_of("from .base import X", "nrfprov.transport", is_package=True) == {"nrfprov.transport.base"}
    assert imports_of("def f():\n    from nrfprov.cli import main\n", "nrfprov.mqtt.x") == {"nrfprov.cli"}
    assert io_calls_of("def f(p):\n    return open(p).read() + p.read_text()") == {"open()", ".read_text()"}
