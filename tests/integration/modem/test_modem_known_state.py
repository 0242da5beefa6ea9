"""What the host knows of the modem is not asked again: the functional mode it set (no ``AT+CFUN?`` before
each credential operation) and the +CEREG URC setting (``AT+CEREG=5`` once per modem start). A raw
``at()`` command or a modem restart (the ``Ready`` banner) makes both unknown again, so nothing is
written in the wrong mode: %CMNG in an active mode would answer 518 [Nordic AT reference, %CMNG].
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nrfprov.modem import Modem
from nrfprov.modem.facade import _cereg_read_stat
from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration



@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatedModem]:
    with SimulatedModem(tmp_path / "sim", dialect="sm", baud=0) as s:
        yield s


def _count(sim: SimulatedModem, text: str) -> int:
    return sum(1 for c in sim.command_log if c == text)


def _ca(tmp_path: Path) -> str:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_credential_work_after_set_cfun_asks_no_cfun(sim: SimulatedModem, tmp_path: Path) -> None:
    ca = _ca(tmp_path)
    with Modem.open(sim.port_url, dialect="sm") as m:
        m.set_cfun(1)
        m.wait_registered(30)
        m.set_cfun(4)
        for tag in (51, 52, 53):
            m.write_credential(tag, 0, ca)
            m.delete_credential(tag, 0)
        assert _count(sim, "AT+CFUN?") == 0  # the mode this host set is known
        m.set_cfun(1)
        m.wait_registered(30)
        assert _count(sim, "AT+CEREG=5") == 1  # once per modem start
        assert _count(sim, "AT+CEREG?") == 1  # the second attach is followed by its URCs alone
        # Behind the facade's back (a raw command): the mode is unknown again, so it is read, and the
        # write goes offline and back as before, instead of answering 518.
        m.at("AT+CFUN=1")
        m.write_credential(54, 0, ca)
        assert _count(sim, "AT+CFUN?") == 1
        assert sim.cfun == 1 and 0 in sim.stored(54)
        # A restart (Ready): CFUN and the URC setting start from scratch and are asked / set again.
        m.at("AT#XRESET")
        m.set_cfun(1)
        m.wait_registered(30)
        assert (_count(sim, "AT+CEREG=5"), _count(sim, "AT+CEREG?")) == (2, 2)
        m.write_credential(55, 0, ca)
        assert 0 in sim.stored(55)


@pytest.mark.parametrize(("lines", "stat"), [
    (['+CEREG: 5,1,"0A2F","0012BEEF",7'], 1),
    (["+CEREG: 5,2"], 2),
    # A URC that arrived while the read was pending comes first among its lines; the read's own line decides.
    (['+CEREG: 1,"0A2F","0012BEEF",7', "+CEREG: 5,0"], 0),
    (['+CEREG: 1,"0A2F","0012BEEF",7', '+CEREG: 5,1,"0A2F","0012BEEF",7'], 1),
    (["+CEREG: 2"], None),
    ([], None),
])
def test_the_cereg_read_is_told_from_a_urc_among_its_lines(lines: list[str], stat: int | None) -> None:
    assert _cereg_read_stat(lines) == stat
