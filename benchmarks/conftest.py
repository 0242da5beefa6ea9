"""Shared benchmark fixtures: one local AWS IoT stand-in per session, and a counting relay in front of it.

The stand-in runs in its own process (``nrfprov cloud up``, see standin_process.py), as a user runs it:
its responder's work (an RSA-2048 key per request, registry and policy writes) is not the client's, and
real AWS IoT does it on other machines. notes.md (finding 4) has the measured effect on P1.

Heavy imports stay inside fixtures so the harness smoke test (normal suite) loads nothing it does not use.
benchmarks/ is on sys.path (pytest's rootdir-relative "prepend" import), so suites import ``relay``,
``awssdk_client`` and ``provisioning_runs`` as plain modules.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from relay import CountingRelay

if TYPE_CHECKING:
    from standin_process import StandInProcess


_LOAD: dict[str, list[float]] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _LOAD["start"] = [round(x, 2) for x in os.getloadavg()]


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list[Any], output_json: dict[str, Any]) -> None:
    """Record how busy the (shared) machine was, at the start and at the end of the run."""
    output_json["nrfprov_load_average"] = {"start": _LOAD.get("start"),
                                           "end": [round(x, 2) for x in os.getloadavg()]}


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandInProcess]:
    """The stand-in every P1/P2/P4 figure is measured against: RSA-2048 device keys, as AWS issues, in a
    process of its own (`nrfprov cloud up`), so none of its threads run in the process being timed."""
    from standin_process import StandInProcess

    with StandInProcess(tmp_path_factory.mktemp("cloud")) as cloud:
        yield cloud


@pytest.fixture(scope="session")
def relay(stand_in: StandInProcess) -> Iterator[CountingRelay]:
    """127.0.0.1:<relay.port> forwards to the stand-in and counts bytes per connection."""
    with CountingRelay(stand_in.host, stand_in.port) as r:
        yield r


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    return tmp_path
