"""Fixtures: a moto server on 127.0.0.1 (moto_aws.py says what it lacks and how that is filled in)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from moto.server import ThreadedMotoServer
from moto_aws import REGION, TEMPLATES, install


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    install()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[dict[str, str]]:
    """A clean account on the moto server, and an environment that points boto3 at it."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).read()
    TEMPLATES.clear()
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_server, "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"), "AWS_EC2_METADATA_DISABLED": "true",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    yield env


