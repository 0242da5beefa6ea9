"""%KEYGEN and %ATTESTTOKEN of the simulator, read by a parser written here from the published layout.

The parser below shares no code with the simulator or with nrfprov: it follows the Nordic AT reference
(%KEYGEN, %ATTESTTOKEN), RFC 9052 (COSE_Sign1, Sig_structure) and the field meanings nrfcloud-utils'
``modem_credentials_parser.py`` prints. The simulator signs with a device key of its own, which the
test reads from the simulator's state to check the signature over the RFC 9052 Sig_structure.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from nrfprov.sim import SimulatedModem

pytestmark = pytest.mark.integration

KEY_TYPES = {-2: "identity_key", -4: "nordic_base_production_key", -5: "nordic_base_rd_key"}


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def quoted_value(line: str, prefix: str) -> tuple[bytes, bytes]:
    assert line.startswith(f'{prefix}: "') and line.endswith('"'), line
    first, second = line[len(prefix) + 3 : -1].split(".")
    assert "=" not in first + second  # base64url without padding
    return b64url(first), b64url(second)


def read_cose_sign1(raw: bytes, public_key: ec.EllipticCurvePublicKey, detached: bytes | None = None) -> dict[str, Any]:
    """COSE_Sign1 = tag 18 [protected bstr, unprotected map, payload bstr / nil, signature bstr]."""
    obj = cbor2.loads(raw)
    assert isinstance(obj, cbor2.CBORTag) and obj.tag == 18
    protected, unprotected, payload, signature = obj.value
    assert cbor2.loads(protected) == {1: -7}  # ES256
    key_types = [cbor2.loads(v) for v in unprotected.values()]  # values are CBOR-encoded key types
    assert len(key_types) == 1 and key_types[0] in KEY_TYPES
    assert len(signature) == 64
    content = payload if payload is not None else detached
    sig_structure = cbor2.dumps(["Signature1", protected, b"", content])  # RFC 9052 §4.4
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    public_key.verify(encode_dss_signature(r, s), sig_structure, ec.ECDSA(hashes.SHA256()))
    return {"key_type": key_types[0], "payload": payload}


def read_keygen(line: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    der, cose = quoted_value(line, "%KEYGEN")
    sign1 = read_cose_sign1(cose, public_key)
    payload_id, dev_uuid, sec_tag_cbor, digest, nonce = cbor2.loads(sign1["payload"])
    sec_tag = cbor2.loads(sec_tag_cbor)  # a CBOR integer inside a byte string
    if sec_tag < 0:
        sec_tag += 1 << 32
    assert len(dev_uuid) == 16 and len(digest) == 32 and len(nonce) == 16
    return {
        "der": der,
        "payload_id": payload_id,
        "device_uuid": str(uuid.UUID(bytes=dev_uuid)),
        "sec_tag": sec_tag,
        "digest": digest,
        "nonce": nonce,
        "key_type": sign1["key_type"],
    }


def _attest_public(sim: SimulatedModem) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_private_key((sim.state_dir / "attest_key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key.public_key()


@pytest.mark.parametrize(("signing_key", "key_type"), [("production", -4), ("rd", -5)])
def test_keygen_csr_and_public_key_read_by_a_third_party_parser(
    sim_factory: Callable[..., SimulatedModem], raw_port_factory, signing_key: str, key_type: int
) -> None:
    sim = sim_factory(baud=0, signing_key=signing_key)
    p = raw_port_factory(sim)
    p.ok("AT+CFUN=4")
    pub = _attest_public(sim)
    seen_nonces = set()
    for tag in (16842753, 2147483647, 0):
        (line,) = p.ok(f"AT%KEYGEN={tag},2,0")
        k = read_keygen(line, pub)
        assert k["payload_id"] == 9  # CSR_msg_v1
        assert k["device_uuid"] == sim.identity.uuid
        assert k["sec_tag"] == tag
        assert k["digest"] == hashlib.sha256(k["der"]).digest()  # the DER as sent, mfw quirk included
        assert k["key_type"] == key_type
        seen_nonces.add(k["nonce"])
    assert len(seen_nonces) == 3
    (line,) = p.ok("AT%KEYGEN=77,2,1")  # public key instead of a CSR
    k = read_keygen(line, pub)
    assert k["payload_id"] == 8  # pubkey_msg_v2
    assert k["sec_tag"] == 77 and k["digest"] == hashlib.sha256(k["der"]).digest()
    spki = serialization.load_der_public_key(k["der"])
    stored = serialization.load_pem_private_key(sim.stored(77)[2].encode(), None)
    assert spki.public_numbers() == stored.public_key().public_numbers()  # type: ignore[union-attr]


def test_attestation_token_read_by_a_third_party_parser(sim_factory, raw_port_factory) -> None:
    sim = sim_factory(baud=0)
    p = raw_port_factory(sim)
    (line,) = p.ok("AT%ATTESTTOKEN")
    body_raw, cose = quoted_value(line, "%ATTESTTOKEN")
    msg_type, dev_uuid, device_type, fw_uuid = cbor2.loads(body_raw)
    assert msg_type == 1  # device identity message v1
    assert str(uuid.UUID(bytes=dev_uuid)) == sim.identity.uuid
    assert device_type in range(1, 7)
    (fw_line,) = p.ok("AT%XMODEMUUID")
    assert str(uuid.UUID(bytes=fw_uuid)) == fw_line.split(":", 1)[1].strip()
    sign1 = read_cose_sign1(cose, _attest_public(sim), detached=body_raw)
    assert sign1["payload"] is None  # nil payload: the identity message is signed detached
    assert sign1["key_type"] == -4
