"""Many modems at once, one stand-in, the combined flow: no two may end with one identity.

Each simulated modem gets its own ``nrfprov provision`` process, all started together, with the default
client id (``nrf-<IMEI>``, one per device). After all have finished: every modem's sec tag holds a
certificate, the certificates are pairwise distinct, each is ACTIVE and registered to that modem's
own thing (its IMEI, by the stand-in's default template), and its key matches.

``make test`` runs 4 modems; ``make reliability`` 20 (figures in ``parallel.jsonl``).
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
from cases import COMBINED_NATIVE, SCENARIOS
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from figures import write_rows

from fixtures.crashrig import TAG, Lab, _cert_id

pytestmark = pytest.mark.integration

SPLIT_OFFLOAD = SCENARIOS[0]
MODEMS = int(os.environ.get("NRFPROV_PARALLEL_MODEMS", "20"))


def _spki(obj: object) -> bytes:
    return obj.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _parallel(lab: Lab, count: int) -> dict[str, object]:
    devices = [lab.device(COMBINED_NATIVE, f"parallel-{count}-{i}") for i in range(count)]
    procs = [d.start() for d in devices]
    outcomes = [d.wait(p) for d, p in zip(devices, procs, strict=True)]
    records = {c.certificate_id: c for c in lab.cloud.certificates()}
    held: list[str] = []
    problems: list[str] = []
    for dev, out in zip(devices, outcomes, strict=True):
        stored = dev.sim.stored(TAG)
        if out.returncode != 0 or 1 not in stored:
            problems.append(f"{dev.state.parent.name}: exit {out.returncode} {out.stderr.strip()[-200:]}")
            continue
        cert_id = _cert_id(stored[1])
        held.append(cert_id)
        rec = records.get(cert_id)
        imei = dev.sim.identity.imei
        if rec is None or rec.status != "ACTIVE" or rec.thing_name != imei:
            problems.append(f"{imei}: certificate {cert_id[:12]} is {rec and (rec.status, rec.thing_name)}")
        key = serialization.load_pem_private_key(stored[2].encode(), password=None)
        if _spki(key) != _spki(x509.load_pem_x509_certificate(stored[1].encode())):
            problems.append(f"{imei}: the key in sec tag {TAG} does not match its certificate")
    shared = {c: n for c, n in Counter(held).items() if n > 1}
    return {"count": count, "ok": sum(o.returncode == 0 for o in outcomes), "held": held, "shared": shared,
            "problems": problems, "tracebacks": sum(o.traceback for o in outcomes)}


def _rows(r: dict[str, object]) -> list[dict[str, object]]:
    n = r["count"]
    sharing = sum(r["shared"].values())  # type: ignore[attr-defined]
    return [
        {"figure": f"modems sharing an identity after {n} parallel combined runs", "value": f"{sharing} of {n}",
         "goal": f"0 of {n}", "detail": f"{r['ok']} of {n} exited 0; {len(set(r['held']))} distinct "  # type: ignore[arg-type]
         f"certificates held; problems: {'; '.join(r['problems'][:3]) or '-'}"},  # type: ignore[index]
        {"figure": f"tracebacks or hangs ({n} parallel runs)", "value": str(r["tracebacks"]), "goal": "0",
         "detail": "-"},
    ]


def test_four_modems_at_once(lab: Lab) -> None:
    r = _parallel(lab, 4)
    write_rows("parallel", _rows(r))
    assert not r["shared"] and not r["problems"] and r["ok"] == 4 and not r["tracebacks"], r


@pytest.mark.reliability
@pytest.mark.timeout(900)
def test_twenty_modems_at_once(lab: Lab) -> None:
    r = _parallel(lab, MODEMS)
    write_rows("parallel", _rows(r))
    assert not r["shared"] and not r["problems"] and r["ok"] == MODEMS and not r["tracebacks"], r


def test_a_split_fleet_without_a_static_client_id_shares_nothing(lab: Lab) -> None:
    """The split flow's replies are addressed by client id alone: with the old fleet-wide default every
    device asked for the same thing. Now each device is ``nrf-<IMEI>`` and gets its own."""
    devices = [lab.device(SPLIT_OFFLOAD, f"split-fleet-{i}") for i in range(3)]
    procs = [d.start() for d in devices]
    outcomes = [d.wait(p) for d, p in zip(devices, procs, strict=True)]
    assert [o.returncode for o in outcomes] == [0, 0, 0], [o.stderr[-300:] for o in outcomes]
    things = [o.summary["thing_name"] for o in outcomes]
    assert things == [f"nrf-{d.sim.identity.imei}" for d in devices]
    held = [_cert_id(d.sim.stored(TAG)[1]) for d in devices]
    assert len(set(held)) == 3
