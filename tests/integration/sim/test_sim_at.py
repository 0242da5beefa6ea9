"""Raw pyserial exchanges with the simulator: framing, modem commands, %CMNG, %KEYGEN (both dialects)."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from sim_peers import normalise_csr

from fixtures.sim import RawPort
from nrfprov.sim import SimulatedModem
from nrfprov.sim.keygen import ECDSA_SHA256_OID_TLV, NULL_TLV
from nrfprov.sim.store import luhn_valid

pytestmark = pytest.mark.integration

RawFactory = Callable[[SimulatedModem], RawPort]


def test_basics_and_identity(sim_modem: SimulatedModem, raw_port_factory: RawFactory) -> None:
    p = raw_port_factory(sim_modem)
    assert p.ok("AT") == []
    imei = p.ok("AT+CGSN")[0]
    assert len(imei) == 15 and luhn_valid(imei)
    assert p.ok("AT+CGSN=1") == [f'+CGSN: "{imei}"']
    assert p.ok("AT+CGMR")[0].startswith("mfw_nrf91")
    assert p.ok("AT+CGMM")[0].startswith("nRF91")
    assert p.ok("AT%XMODEMUUID")[0].startswith("%XMODEMUUID: ")
    # Dialect probe: each dialect has its own version command (SM #XSMVER, SLM #XSLMVER); ERROR for
    # the other one is our choice where Nordic's docs are silent, mirrored by the client.
    if sim_modem.dialect == "sm":
        assert p.ok("AT#XSMVER")[0].startswith('#XSMVER: "')
        assert p.cmd("AT#XSLMVER")[1] == "ERROR"
    else:
        assert p.cmd("AT#XSMVER")[1] == "ERROR"
        assert p.ok("AT#XSLMVER")[0].startswith('#XSLMVER: "')


def test_imei_is_stable_per_state_dir(sim_factory, tmp_path, raw_port_factory) -> None:
    a = sim_factory(state_dir=tmp_path / "dev", baud=0)
    imei1 = raw_port_factory(a).ok("AT+CGSN")[0]
    a.stop()
    b = sim_factory(state_dir=tmp_path / "dev", baud=0)
    assert raw_port_factory(b).ok("AT+CGSN")[0] == imei1
    c = sim_factory(state_dir=tmp_path / "other", baud=0)
    assert raw_port_factory(c).ok("AT+CGSN")[0] != imei1


def test_framing_rules(sim_modem: SimulatedModem, raw_port_factory: RawFactory) -> None:
    p = raw_port_factory(sim_modem)
    end = p.term  # CR for Serial Modem, CR LF for legacy SLM (their Kconfig defaults)
    # Noise before AT is skipped (SLM cmd_send), but "at AT+CGSN" is not AT+CGSN: grammar error.
    p.write(b"\x00garbage AT" + end)
    assert p.final() == ([], "OK")
    assert p.cmd("at AT+CGSN")[1] == "ERROR"
    # Lower case, backspace editing, empty lines ignored.
    p.write(end + end + b"at+cfun?" + end)
    assert p.final() == (["+CFUN: 0"], "OK")
    p.write(b"AT+CFUX\x08N?" + end)
    assert p.final() == (["+CFUN: 0"], "OK")
    # Only the firmware's terminator ends a command: the other line break is part of it (one ERROR).
    other = b"\n" if end == b"\r" else b"\r"
    p.write(b"AT+CGMM" + other + b"AT" + end)
    assert p.final() == ([], "ERROR")
    assert p.cmd("ATE0")[1] == "ERROR"
    assert p.cmd("AT+NOPE")[1] == "ERROR"
    # Over 4096 bytes: ERROR, the rest of the line is discarded, the next command works.
    p.send("AT%CMNG=0,1,0,\"" + "A" * 5000 + '"')
    assert p.final() == ([], "ERROR")
    assert p.ok("AT") == []


def test_cfun_and_cereg_urcs(sim_factory: Callable[..., SimulatedModem], raw_port_factory: RawFactory) -> None:
    sim = sim_factory(attach_delay=0.3, baud=0)
    p = raw_port_factory(sim)
    p.ok("AT+CEREG=5")
    assert p.ok("AT+CEREG?") == ["+CEREG: 5,0"]
    t0 = time.monotonic()
    p.send("AT+CFUN=1")
    assert p.line() == "OK"  # the answer comes first, registration URCs after it
    assert p.line() == "+CEREG: 2"
    assert p.line(timeout=3) == '+CEREG: 1,"0A2F","0012BEEF",7'
    assert time.monotonic() - t0 >= 0.3
    assert p.ok("AT+CFUN?") == ["+CFUN: 1"]
    assert p.ok("AT+CEREG?") == ['+CEREG: 5,1,"0A2F","0012BEEF",7']
    p.send("AT+CFUN=4")
    assert p.line() == "OK"
    assert p.line() == "+CEREG: 0"
    assert p.ok("AT+CFUN?") == ["+CFUN: 4"]
    # CFUN=1 needs an LTE system mode [sdk-nrf include/modem/lte_lc.h].
    assert p.ok("AT%XSYSTEMMODE?") == ["%XSYSTEMMODE: 1,0,0,0"]
    p.ok("AT%XSYSTEMMODE=0,0,1,0")
    assert p.cmd("AT+CFUN=1")[1] == "ERROR"
    p.ok("AT%XSYSTEMMODE=0,1,0,0")
    p.ok("AT+CFUN=1")


def _pem_cert() -> str:
    import datetime as dt

    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_cmng_rules(sim_modem: SimulatedModem, raw_port_factory: RawFactory) -> None:
    p = raw_port_factory(sim_modem)
    cert = _pem_cert()
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    # Without CMEE=1 a CME error is a plain ERROR; with it, the number shows.
    p.ok("AT+CFUN=1")
    assert p.cmd(f'AT%CMNG=0,42,0,"{cert}"')[1] == "ERROR"
    p.ok("AT+CMEE=1")
    assert p.cmd(f'AT%CMNG=0,42,0,"{cert}"')[1] == "+CME ERROR: 518"
    assert p.cmd("AT%CMNG=3,42,0")[1] == "+CME ERROR: 518"
    p.ok("AT+CFUN=4")
    # CRLF and LF contents are stored byte for byte; the list shows SHA-256 of exactly that.
    crlf = cert.replace("\n", "\r\n")
    p.ok(f'AT%CMNG=0,42,0,"{crlf}"')
    p.ok(f'AT%CMNG=0,42,1,"{cert.rstrip()}"')  # nrfcredstore strips the trailing newline
    p.ok(f'AT%CMNG=0,42,2,"{key}"')
    listed = p.ok("AT%CMNG=1,42")
    sha = lambda s: hashlib.sha256(s.encode()).hexdigest().upper()  # noqa: E731
    assert listed == [
        f'%CMNG: 42,0,"{sha(crlf)}"',
        f'%CMNG: 42,1,"{sha(cert.rstrip())}"',
        f'%CMNG: 42,2,"{sha(key)}"',
    ]
    assert sim_modem.stored(42) == {0: crlf, 1: cert.rstrip(), 2: key}
    assert p.ok("AT%CMNG=1,42,1") == [f'%CMNG: 42,1,"{sha(cert.rstrip())}"']
    # Read returns the content; a private key cannot be read back; empty slot → 513.
    p.send("AT%CMNG=2,42,0")
    head = p.line()
    assert head.startswith(f'%CMNG: 42,0,"{sha(crlf)}","-----BEGIN CERTIFICATE-----')
    p.read_until(b"\r\nOK\r\n")
    assert p.cmd("AT%CMNG=2,42,2")[1] == "+CME ERROR: 514"
    assert p.cmd("AT%CMNG=2,43,0")[1] == "+CME ERROR: 513"
    assert p.cmd("AT%CMNG=3,43,0")[1] == "+CME ERROR: 513"
    # Bad content: literal \n, spaces instead of newlines, key in a cert slot, empty.
    assert p.cmd('AT%CMNG=0,44,0,"' + cert.replace("\n", "\\n") + '"')[1] == "+CME ERROR: 527"
    assert p.cmd('AT%CMNG=0,44,0,"' + cert.replace("\n", " ") + '"')[1] == "+CME ERROR: 527"
    assert p.cmd(f'AT%CMNG=0,44,1,"{key}"')[1] == "+CME ERROR: 527"
    assert p.cmd(f'AT%CMNG=0,44,2,"{cert}"')[1] == "+CME ERROR: 527"
    assert p.cmd('AT%CMNG=0,44,0,""')[1] == "ERROR"
    # Two CAs in one slot are fine (nrfcloud-utils does it); overwrite replaces; delete works.
    p.ok(f'AT%CMNG=0,44,0,"{cert}{_pem_cert()}"')
    p.ok(f'AT%CMNG=0,44,0,"{cert}"')
    assert sim_modem.stored(44) == {0: cert}
    p.ok("AT%CMNG=3,44,0")
    assert sim_modem.stored(44) == {}
    assert p.ok("AT%CMNG=1,44") == []


def _b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@pytest.mark.parametrize("quirk", [True, False])
def test_keygen_csr_and_cose(
    sim_factory: Callable[..., SimulatedModem], raw_port_factory: RawFactory, quirk: bool
) -> None:
    sim = sim_factory(baud=0, csr_null_quirk=quirk)
    p = raw_port_factory(sim)
    p.ok("AT+CMEE=1")
    p.ok("AT+CFUN=1")
    assert p.cmd("AT%KEYGEN=16842753,2,0")[1] == "+CME ERROR: 518"
    p.ok("AT+CFUN=4")
    (line,) = p.ok('AT%KEYGEN=16842753,2,0,"O=Nordic Semiconductor,CN=dev-1"')
    assert line.startswith('%KEYGEN: "') and line.endswith('"')
    csr_b64, cose_b64 = line[len('%KEYGEN: "') : -1].split(".")
    assert "=" not in csr_b64 + cose_b64
    der = _b64url_decode(csr_b64)
    quirky_alg = b"\x30\x0c" + ECDSA_SHA256_OID_TLV + NULL_TLV
    assert (quirky_alg in der) is quirk
    if quirk:  # strict parsers refuse the quirky CSR; normalise as nrfcloud-utils does
        with pytest.raises(ValueError):
            x509.load_der_x509_csr(der)
    csr = x509.load_der_x509_csr(normalise_csr(der) if quirk else der)
    assert csr.is_signature_valid
    assert csr.subject.rfc4514_string() == "CN=dev-1,O=Nordic Semiconductor"
    # The key stays in the modem (type 2, unreadable) and matches the CSR.
    stored = serialization.load_pem_private_key(sim.stored(16842753)[2].encode(), None)
    assert stored.public_key().public_numbers() == csr.public_key().public_numbers()  # type: ignore[union-attr]
    assert p.cmd("AT%CMNG=2,16842753,2")[1] == "+CME ERROR: 514"
    # COSE_Sign1: tag 18, ES256, payload binds the CSR hash; signature verifies with the device key.
    cose = cbor2.loads(_b64url_decode(cose_b64))
    assert cose.tag == 18
    protected, _unprot, payload, sig = cose.value
    assert cbor2.loads(protected) == {1: -7}
    assert hashlib.sha256(der).digest() in cbor2.loads(payload)
    to_verify = cbor2.dumps(["Signature1", protected, b"", payload])
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    sim.identity.attest_key.public_key().verify(encode_dss_signature(r, s), to_verify, ec.ECDSA(hashes.SHA256()))
    assert p.cmd('AT%KEYGEN=5,2,0,"XX=bad"')[1] == "ERROR"


def test_survives_garbage(sim_factory, raw_port_factory, caplog) -> None:
    import logging
    import random

    caplog.set_level(logging.WARNING, logger="nrfprov.sim")

    sim = sim_factory(baud=0)
    p = raw_port_factory(sim)
    rnd = random.Random(4)
    for _ in range(30):
        junk = bytes(b for b in rnd.randbytes(rnd.randrange(1, 600)) if b != 0x22)  # no quotes: lines end
        p.write(junk + b"\r\nAT+CGMM\r\n")
        p.read_until(b"\r\nnRF9160-SICA\r\n\r\nOK\r\n")  # whatever junk did, the modem still answers
    p.buf.clear()
    assert p.ok("AT") == []
    assert sim.link_alive
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no simulator bug was hit
