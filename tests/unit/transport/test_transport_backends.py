"""Backend selection from real Settings fragments, and the host backend against an OpenSSL server."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from transport_peers import Pki, TlsServer

from nrfprov.config import load_settings
from nrfprov.errors import UsageError
from nrfprov.transport.backends import describe_backend, open_stream
from nrfprov.transport.credentials import TlsCredentials
from nrfprov.transport.native_tls import NativeTlsStream


def fragments(tmp_path: Path, *texts: str) -> list[Path]:
    paths = []
    for i, t in enumerate(texts):
        p = tmp_path / f"frag{i}.conf"
        p.write_text(t)
        paths.append(p)
    return paths


def test_native_overlay_decides_and_is_named(tmp_path: Path) -> None:
    prj, overlay = fragments(tmp_path, "CONFIG_AWS_IOT_BROKER_HOST_NAME=\"localhost\"\n",
                             "# native\nCONFIG_MBEDTLS_TLS_LIBRARY=y\nCONFIG_MBEDTLS_SSL_IN_CONTENT_LEN=5120\n"
                             "CONFIG_MQTT_HELPER_PAYLOAD_BUFFER_LEN=8096\nCONFIG_NRFPROV_MIRROR_DEVICE_LIMITS=y\n")
    s = load_settings(prj, [overlay])
    assert s.tls_backend == "native"
    line = describe_backend(s)
    assert line.startswith("TLS backend native (host Mbed TLS over the modem's TCP socket), chosen by ")
    assert f"{overlay}:2: CONFIG_MBEDTLS_TLS_LIBRARY=y" in line
    # the symbol named in mirror errors is the one the fragments used (v2.9 name here)
    lim = s.device_limits()
    assert lim is not None
    assert (lim.in_content_symbol, lim.in_content_len) == ("CONFIG_MBEDTLS_SSL_IN_CONTENT_LEN", 5120)
    assert (lim.payload_symbol, lim.payload_len) == ("CONFIG_MQTT_HELPER_PAYLOAD_BUFFER_LEN", 8096)
    assert "CONFIG_MQTT_HELPER_PAYLOAD_BUFFER_LEN=8096" in line


def test_default_is_offload_and_needs_modem_and_tag(tmp_path: Path) -> None:
    s = load_settings(None, [], ["CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost"])
    assert describe_backend(s).endswith("chosen by default: no fragment enables native TLS")
    assert s.device_limits() is None
    with pytest.raises(UsageError, match="no modem was given"):
        open_stream(s)
    with pytest.raises(UsageError, match="no modem was given"):
        open_stream(s, backend="native")
    with pytest.raises(UsageError, match="unknown TLS backend"):
        open_stream(s, backend="carrier-pigeon")


def test_host_backend_opens_native_tls_and_logs_one_line(
    tls_server: Callable[..., TlsServer], pki: Pki, creds: TlsCredentials, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    srv = tls_server(pki)
    s = load_settings(None, [], ["CONFIG_NRFPROV_TLS_BACKEND=host", "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost",
                                 f"CONFIG_AWS_IOT_PORT={srv.port}"])
    caplog.set_level(logging.INFO, logger="nrfprov.transport")
    with open_stream(s, credentials=creds, host="127.0.0.1", server_name="localhost", timeout=5) as stream:
        assert isinstance(stream, NativeTlsStream)
        data = os.urandom(3000)
        stream.send(data)
        got = b""
        while len(got) < len(data):
            got += stream.recv(4096, 5)
        assert got == data
    lines = [r.getMessage() for r in caplog.records if r.name == "nrfprov.transport.backends"]
    assert len(lines) == 1
    assert "TLS backend host" in lines[0] and "--set: CONFIG_NRFPROV_TLS_BACKEND=host" in lines[0]


def test_host_backend_reads_the_certs_folder(
    tls_server: Callable[..., TlsServer], pki: Pki, tmp_path: Path,
) -> None:
    srv = tls_server(pki)
    d = tmp_path / "claim"
    d.mkdir()
    (d / "ca-cert.pem").write_text(pki.ca.pem)
    (d / "client-cert.pem").write_text(pki.client_cert)
    (d / "private-key.pem").write_text(pki.client_key)
    s = load_settings(None, [], ["CONFIG_NRFPROV_TLS_BACKEND=host", "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost",
                                 f"CONFIG_NRFPROV_CERTS_DIR={d}"])
    with open_stream(s, host="127.0.0.1", port=srv.port, server_name="localhost", timeout=5) as stream:
        stream.send(b"ping")
        assert stream.recv(4, 5) == b"ping"
    srv.done.wait(5)
    assert srv.record.client_cn == "dev-1"
