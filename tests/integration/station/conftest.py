"""Fixture: a bench of simulated modems (claim credentials pre-flashed in sec tag 43, as a factory
image would hold them), one local AWS IoT stand-in, and the Kconfig fragment pointing at both."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from benchrig import Bench

from nrfprov.cloud import LocalAwsIot


@pytest.fixture
def bench_factory(local_aws_factory: Callable[..., LocalAwsIot], tmp_path: Path) -> Iterator[Callable[..., Bench]]:
    benches: list[Bench] = []

    def make(count: int, **cloud_options: Any) -> Bench:
        bench = Bench(local_aws_factory(**cloud_options), tmp_path / f"bench{len(benches)}")
        benches.append(bench)
        for _ in range(count):
            bench.add_modem()
        return bench

    yield make
    for b in benches:
        b.close()
