"""Facade tests shared by the simulator run (test_modem_sim.py, both dialects) and the hardware run
(tests/hardware/test_modem_hw.py, ``--port``). Each test leaves the modem as it found it."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from cryptography import x509

from integration.modem.modem_peers import BIG_RECORD, Target, make_client_identity
from nrfprov.errors import (
    CommandError,
    ConnectError,
    CredentialError,
    DialectError,
    ModemTlsLimitError,
    PayloadTooLarge,
    ResponseTimeout,
)
from nrfprov.modem import CredentialType, Modem

REG_TIMEOUT = 60.0  # LTE attach on hardware takes seconds to minutes; the sim attaches at once


def online(m: Modem) -> None:
    if m.cfun() != 1:
        m.set_cfun(1)
    m.wait_registered(REG_TIMEOUT)


def cleanup(m: Modem, tag: int) -> None:
    for t in (0, 1, 2):
        m.delete_credential(tag, t)


def test_identity_and_dialect(modem: Modem, target: Target) -> None:
    imei = modem.imei()
    assert len(imei) == 15 and imei.isdigit()
    assert modem.firmware().startswith("mfw_")
    if target.sim is not None:
        assert modem.dialect == target.sim.dialect
    else:
        assert modem.dialect in ("sm", "slm")
    assert modem.uart_bytes_sent > 0 and modem.uart_bytes_received > 0


def test_errors_are_typed(modem: Modem, target: Target) -> None:
    with pytest.raises(CommandError) as info:
        modem.at("AT+NRFPROVNOSUCHCMD")
    assert info.value.kind in ("ERROR", "CME")
    modem.set_cfun(4)
    with pytest.raises(CommandError) as info:
        modem.at(f"AT%CMNG=3,{target.scratch_tag},1")  # empty slot
    assert (info.value.kind, info.value.code) == ("CME", 513)
    assert modem.delete_credential(target.scratch_tag, 1) is False
    assert modem.at("AT+CFUN?") == ["+CFUN: 4"]


def test_credentials_round_trip_restores_cfun(modem: Modem, target: Target) -> None:
    assert target.pki is not None
    tag = target.scratch_tag
    cert, key = make_client_identity(target.pki.ca_pem)
    online(modem)
    try:
        pem_crlf = target.pki.ca_pem.replace("\n", "\r\n")  # nrfcloud-utils style input
        sha_ca = modem.write_credential(tag, CredentialType.ROOT_CA_CERT, pem_crlf)
        assert sha_ca == hashlib.sha256(target.pki.ca_pem.strip().encode() + b"\n").hexdigest().upper()
        sha_cert = modem.write_credential(tag, 1, cert)
        sha_key = modem.write_credential(tag, CredentialType.CLIENT_KEY, key)
        assert modem.cfun() == 1  # restored after each write
        listed = {(c.type, c.sha256) for c in modem.credentials(tag)}
        assert listed == {
            (CredentialType.ROOT_CA_CERT, sha_ca),
            (CredentialType.CLIENT_CERT, sha_cert),
            (CredentialType.CLIENT_KEY, sha_key),
        }
        # overwrite with other content: the new hash is reported
        other_cert, _ = make_client_identity(target.pki.ca_pem)
        assert modem.write_credential(tag, 1, other_cert) != sha_cert
        assert all(c.sec_tag == tag for c in modem.credentials(tag))
        with modem.offline():
            assert modem.cfun() == 4
            assert modem.delete_credential(tag, 2) is True
        assert modem.cfun() == 1
        assert {c.type for c in modem.credentials(tag)} == {0, 1}
    finally:
        cleanup(modem, tag)
    assert modem.credentials(tag) == []
    assert modem.cfun() == 1


def test_invalid_content_is_credential_error_and_mode_restored(modem: Modem, target: Target) -> None:
    online(modem)
    bad = "-----BEGIN CERTIFICATE-----\nthis is not base64 DER\n-----END CERTIFICATE-----\n"
    with pytest.raises(CredentialError) as info:
        modem.write_credential(target.scratch_tag, 0, bad)
    assert isinstance(info.value.__cause__, CommandError)
    assert modem.cfun() == 1


def test_oversized_credential_refused_before_sending(modem: Modem, target: Target) -> None:
    body = "\n".join("A" * 64 for _ in range(70))  # ~4.5 KB: over the 4096-byte command limit
    pem = f"-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"
    sent = modem.uart_bytes_sent
    with pytest.raises(PayloadTooLarge):
        modem.write_credential(target.scratch_tag, 0, pem)
    assert modem.uart_bytes_sent == sent


def test_keygen_gives_a_valid_csr(modem: Modem, target: Target) -> None:
    tag = target.scratch_tag
    try:
        der = modem.keygen_csr(tag, attributes="CN=nrfprov-test")
        csr = x509.load_der_x509_csr(der)
        assert csr.is_signature_valid
        assert csr.signature_algorithm_oid == x509.oid.SignatureAlgorithmOID.ECDSA_WITH_SHA256
        assert [c.type for c in modem.credentials(tag)] == [CredentialType.CLIENT_KEY]
    finally:
        cleanup(modem, tag)


def test_registration(modem: Modem) -> None:
    modem.set_cfun(4)
    modem.set_cfun(1)
    assert modem.wait_registered(REG_TIMEOUT) in (1, 5)
    assert modem.registration_status in (1, 5)


# --- sockets ------------------------------------------------------------------------------------


def _needs_peers(target: Target) -> None:
    if target.tcp is None or target.tls is None:
        pytest.skip("needs echo servers reachable from the modem (only the simulator run has them)")


def test_tcp_echo_binary(modem: Modem, target: Target) -> None:
    _needs_peers(target)
    assert target.tcp is not None
    online(modem)
    payload = bytes(range(256)) * 4 + b"\r\nOK\r\n#XRECV: 0,0,5\r\n"
    if modem.dialect == "slm":
        with pytest.raises(DialectError):
            modem.check_raw_binary_safe()
        payload = payload.replace(b"+++", b"+-+")
    else:
        modem.check_raw_binary_safe()
        payload += b"+++" * 3
    with modem.open_tcp(*target.tcp) as s:
        s.send(payload)
        got = b""
        while len(got) < len(payload):
            chunk = s.recv(4096, timeout=10)
            assert chunk
            got += chunk
        assert got == payload
        assert s.bytes_sent == len(payload) and s.bytes_received == len(payload)
        with pytest.raises(ResponseTimeout) as info:
            s.recv(10, timeout=0.3)
        assert info.value.timeout == 0.3  # this call's own timeout ended it
        s.send(b"CLOSE")
        assert s.recv(10, timeout=10) == b""


def test_tcp_large_transfer(modem: Modem, target: Target) -> None:
    _needs_peers(target)
    assert target.tcp is not None
    online(modem)
    payload = os.urandom(12_000)
    if modem.dialect == "slm":
        payload = payload.replace(b"+", b"-")  # short terminator: the test stays clear of it
    with modem.open_tcp(*target.tcp) as s:
        s.send(payload)
        got = bytearray()
        while len(got) < len(payload):
            got += s.recv(2048, timeout=10)
        assert bytes(got) == payload


def test_modem_tls_echo_and_record_limit(modem: Modem, target: Target) -> None:
    _needs_peers(target)
    assert target.tls is not None and target.pki is not None
    tag = target.scratch_tag
    online(modem)
    try:
        modem.write_credential(tag, 0, target.pki.ca_pem)
        host, port = target.tls
        with modem.open_tls(host, port, sec_tag=tag, hostname=target.pki.hostname) as s:
            s.send(b"hello over modem TLS")
            assert s.recv(100, timeout=10) == b"hello over modem TLS"
            s.send(b"BIG")  # the server answers with one 3000-byte TLS record
            with pytest.raises(ModemTlsLimitError) as info:
                got = b""
                while len(got) < BIG_RECORD:
                    got += s.recv(4096, timeout=10)
            assert info.value.limit == 2048
            with pytest.raises(ModemTlsLimitError):  # sticky: the socket stays failed
                s.recv(10, timeout=1)
    finally:
        cleanup(modem, tag)


def test_modem_tls_wrong_hostname_fails_to_connect(modem: Modem, target: Target) -> None:
    _needs_peers(target)
    assert target.tls is not None and target.pki is not None
    tag = target.scratch_tag
    online(modem)
    try:
        modem.write_credential(tag, 0, target.pki.ca_pem)
        with pytest.raises(ConnectError) as info:
            modem.open_tls(target.tls[0], target.tls[1], sec_tag=tag, hostname="not-the-broker.test")
        assert str(tag) in str(info.value)
        # the failed socket was closed: a new one opens fine
        with modem.open_tcp(*target.tcp or ("", 0)) as s:
            s.send(b"x")
            assert s.recv(1, timeout=10) == b"x"
    finally:
        cleanup(modem, tag)


def test_short_timeout_polling_like_the_mqtt_tunnel(modem: Modem, target: Target) -> None:
    _needs_peers(target)
    assert target.tcp is not None
    online(modem)
    with modem.open_tcp(*target.tcp) as s:
        with pytest.raises(ResponseTimeout):
            s.recv(10, timeout=0)
        sent = modem.uart_bytes_sent
        for _ in range(20):
            with pytest.raises(ResponseTimeout):
                s.recv(10, timeout=0)
        if modem.dialect == "sm":
            # #XRECV re-armed POLLIN, so idle polls wait for #XAPOLL instead of asking the modem.
            assert modem.uart_bytes_sent == sent
        s.send(b"ping")
        got = b""
        deadline = time.monotonic() + 10
        while got != b"ping" and time.monotonic() < deadline:
            try:
                got += s.recv(10, timeout=0.05)
            except ResponseTimeout:
                continue
        assert got == b"ping"
