"""``nrfprov tls-check`` through the real CLI entry point against an OpenSSL server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from transport_peers import Pki, TlsServer

from nrfprov.cli import main


def certs_folder(tmp_path: Path, pki: Pki, *, client: bool = True) -> Path:
    d = tmp_path / "certs"
    d.mkdir()
    (d / "ca-cert.pem").write_text(pki.ca.pem)
    if client:
        (d / "client-cert.pem").write_text(pki.client_cert)
        (d / "private-key.pem").write_text(pki.client_key)
    return d


def test_tls_check_host_backend_json(tls_server: Callable[..., TlsServer], pki: Pki, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    srv = tls_server(pki)
    rc = main(["tls-check", "--backend", "host", "--host", "127.0.0.1", "--broker-port", str(srv.port),
               "--set", "CONFIG_AWS_IOT_BROKER_HOST_NAME=localhost", "--certs", str(certs_folder(tmp_path, pki)),
               "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["backend"] == "host" and "chosen by the caller" in out["decided_by"]
    assert out["tls"]["cipher"].startswith("TLS-ECDHE-RSA-WITH-AES") and out["tls"]["handshake_writes"] == 2
    assert [layer["layer"] for layer in out["layers"]] == ["NativeTlsStream", "HostTcpStream"]


def test_tls_check_failures_map_to_exit_codes(tls_server: Callable[..., TlsServer], pki: Pki, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    srv = tls_server(pki)
    base = ["tls-check", "--backend", "host", "--host", "127.0.0.1", "--broker-port", str(srv.port)]
    rc = main([*base, "--server-name", "wrong.example", "--certs", str(certs_folder(tmp_path, pki))])
    assert rc == 4
    assert "'wrong.example' is not among the certificate's names" in capsys.readouterr().err
    assert main(["tls-check", "--backend", "native", "--set", "CONFIG_AWS_IOT_BROKER_HOST_NAME=x"]) == 2
    assert "needs the modem" in capsys.readouterr().err
