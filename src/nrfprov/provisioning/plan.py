"""What a provisioning run will do, decided before the driver touches the modem (no I/O here).

- :func:`check_combination` refuses flows, backends and settings that cannot work (exit 2);
- :func:`check_inputs` checks every local input (``preflight.py``) before the cloud is asked;
- :func:`choose_run` settles a fresh run or a ``--resume`` from the journal's last record. A resume
  takes flow, format, client ID and sec tag from the journal (what was issued), not from today's
  configuration, and tells apart what the journal shows: never requested, requested with the reply
  lost (it names what the cloud probably issued), a reply or a bundle to continue with, a
  registration in doubt, or a run already proven. A fresh run is refused while unproven
  credentials sit in the journal, and when the provisioned sec tag already holds a client
  certificate, unless ``force``;
- :func:`machine_plan` turns that choice, the CA text and the modem's IMEI into the machine's Plan;
- :func:`journal_state` says, from the journal alone, whether the next run must be a ``--resume``
  (a station decides each device's run with it, as a user reads ``--resume``'s advice).

The driver reads the journal, the local files, the IMEI and the sec tag's listing and hands them
in; it then only executes the machine's effects.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from nrfprov.config import Settings
from nrfprov.errors import AlreadyProvisioned, JournalError, ModemTlsLimitError, NrfprovError, UsageError
from nrfprov.names import BACKENDS, FLEET_FLOWS, FLOWS, FORMATS, Backend, Flow, PayloadFormat
from nrfprov.provisioning import flows, preflight
from nrfprov.provisioning import machine as m
from nrfprov.provisioning.bundle import CredentialBundle, normalize_pem, sha256_hex
from nrfprov.provisioning.inputs import LocalInputs
from nrfprov.provisioning.journal import JournalRecord


def check_combination(settings: Settings, flow: str, backend: str, *, claim_tag_needed: bool = True,
                      will_request: bool = True) -> None:
    """Refuse, before any I/O, combinations that cannot work (exit 2; combined over offload: exit 4, the
    modem's TLS limit, unless ``will_request`` is False: a resume whose reply is already journaled only
    writes and reconnects, which offload can do)."""
    if flow not in FLOWS:
        raise UsageError(f"unknown flow {flow!r}", hint=f"use one of {', '.join(FLOWS)}")
    if backend not in BACKENDS:
        raise UsageError(f"unknown TLS backend {backend!r}", hint=f"use one of {', '.join(BACKENDS)}")
    if flow in FLEET_FLOWS and not settings.template_name:
        raise UsageError(
            f"the {flow} flow needs a provisioning template: AWS IoT activates a certificate made over "
            "MQTT only in RegisterThing",
            hint='set CONFIG_NRFPROV_TEMPLATE_NAME="<template>" and CONFIG_NRFPROV_TEMPLATE_PARAMETERS, '
            'or use --flow split',
        )
    if flow == "combined" and backend == "offload" and will_request:
        # CreateKeysAndCertificate answers in one ~3.5 KB message (~3 KB in CBOR), one TLS record larger
        # than the 2303 bytes the modem's TLS accepts (sdk-nrf known issue, EMSGSIZE). Requesting it would
        # issue a certificate and key that no device can ever receive.
        raise ModemTlsLimitError(
            "the combined flow cannot run over the modem's own TLS: AWS's CreateKeysAndCertificate reply "
            "(~3.5 KB) is larger than the modem's 2 KB TLS record limit; refused before anything is requested")
    if not settings.broker_host:
        raise UsageError("no broker endpoint", hint='set CONFIG_AWS_IOT_BROKER_HOST_NAME="<xxx>-ats.iot.<region>'
                         '.amazonaws.com" in prj.conf or with --set')
    if backend == "offload" and claim_tag_needed and settings.claim_sec_tag is None:
        raise UsageError(
            "the offload backend connects with the claim credentials in a modem sec tag, but none is set",
            hint="set CONFIG_AWS_IOT_SEC_TAG (Nordic's aws_iot_provisioning sample uses 43) and load the claim "
            "credentials there (nrfprov creds write)",
        )
    preflight.check_sec_tags(provisioned=settings.provisioned_sec_tag, claim=settings.claim_sec_tag, backend=backend)
    if settings.claim_sec_tag is not None and settings.claim_sec_tag == settings.provisioned_sec_tag:
        raise UsageError(
            f"claim and provisioned sec tag are both {settings.provisioned_sec_tag}: the write would "
            "destroy the claim credentials",
            hint="use another CONFIG_NRFPROV_PROVISIONED_SEC_TAG (Nordic's aws_iot_provisioning sample uses 50)")


def check_inputs(settings: Settings, inputs: LocalInputs, *, flow: Flow, backend: Backend, sec_tag: int,
                 client_id: str, parameters: dict[str, str], now: _dt.datetime) -> None:
    """Everything local a run needs, checked before the cloud is asked (preflight.py)."""
    preflight.check_sec_tags(provisioned=sec_tag, claim=settings.claim_sec_tag, backend=backend)
    preflight.check_ca(inputs.ca_pem, ", ".join(str(p) for p in inputs.ca_paths), sec_tag=sec_tag, now=now)
    preflight.check_expected_sizes(sec_tag=sec_tag, with_key=flow != "csr")
    if backend in ("native", "host"):
        preflight.check_claim_folder(inputs, now=now)
    if flow in FLEET_FLOWS:
        preflight.check_placeholders(settings.parameters())
    preflight.check_names(flow=flow, client_id=client_id, template=settings.template_name, parameters=parameters)


@dataclass(frozen=True)
class StoredCertificate:
    """The client certificate the provisioned sec tag already holds (read before the run)."""

    sha256: str  # what %CMNG list reports: SHA-256 of the stored PEM
    pem: str | None = None  # the PEM, when the modem lets it be read


@dataclass(frozen=True)
class RunChoice:
    """What this run does: fresh or resumed, with which names, and the journal record to keep."""

    flow: Flow
    payload_format: PayloadFormat
    backend: Backend
    client_id: str
    provisioned_sec_tag: int
    record: JournalRecord
    resume: CredentialBundle | None  # the journaled bundle a --resume continues with
    #: Raw replies a crash kept from being parsed: a --resume makes the bundle from them.
    replies: tuple[tuple[str, bytes], ...] = ()
    csr_public_key: bytes | None = None
    register_in_doubt: bool = False
    #: --resume of a run that was already proven: nothing to do but say so.
    finished: bool = False
    #: Things the user must hear (orphaned certificates, the certificate --force replaces).
    notices: tuple[str, ...] = ()
    replaced: dict[str, str] | None = None
    orphans: tuple[dict[str, Any], ...] = field(default_factory=tuple)


def choose_run(settings: Settings, existing: JournalRecord | None, journal_path: Path, *, flow: Flow,
               payload_format: PayloadFormat, backend: Backend, resume: bool, imei: str = "",
               stored: StoredCertificate | None = None, force: bool = False) -> RunChoice:
    if existing is not None and existing.conflict:
        raise UsageError(
            f"{journal_path} holds credentials from a reply conflict (certificates "
            f"{', '.join(existing.conflict)}): the key may be known to another device, so it is never used",
            hint="revoke those certificates (aws iot update-certificate --certificate-id ID --new-status REVOKED), "
            "then move that file away and run again")
    if resume:
        choice = _choose_resume(existing, journal_path, backend)
    else:
        choice = _choose_fresh(settings, existing, journal_path, flow=flow, payload_format=payload_format,
                               backend=backend, imei=imei, stored=stored, force=force)
    if not choice.finished:
        flows.check_client_id(choice.client_id)
        check_combination(settings, choice.flow, backend,
                          will_request=choice.resume is None and not choice.replies)
    return choice


def _choose_resume(existing: JournalRecord | None, journal_path: Path, backend: Backend) -> RunChoice:
    if existing is None:
        raise UsageError(f"nothing to resume: no journal in {journal_path.parent} (nothing was requested)",
                         hint="run without --resume to request new credentials")
    flow, payload_format = _journaled_names(existing, journal_path)
    base = RunChoice(flow, payload_format, backend, existing.client_id, existing.provisioned_sec_tag, existing,
                     None, orphans=tuple(existing.orphans))
    if existing.proven:
        bundle = existing.bundle or {}
        when = f" at {existing.proven_at}" if existing.proven_at else ""
        return replace(base, finished=True, notices=(
            f"already provisioned and proven{when}: thing {bundle.get('thing_name') or existing.client_id}, "
            f"certificate {bundle.get('certificate_id', '?')} in sec tag {existing.provisioned_sec_tag}; "
            "nothing to resume",))
    pending = existing.pending_bundle()
    if pending is not None:
        # A RegisterThing the cloud answered with `rejected` registered nothing (Journal.fail notes it).
        doubt = not pending.thing_name and any(r.get("operation") == "register" and not r.get("rejected")
                                               for r in existing.requests)
        return replace(base, resume=pending, register_in_doubt=doubt)
    if _usable_replies(existing):
        return replace(base, replies=tuple(existing.raw_replies()), csr_public_key=_csr_key(existing))
    lost = [_orphan_of(r) for r in existing.requests if r.get("operation") != "register" and not r.get("rejected")]
    if existing.requests and not lost:
        raise UsageError(f"nothing to resume in {journal_path}: the cloud rejected the request, nothing was issued",
                         hint="run without --resume to request new credentials")
    if existing.requests:
        got = "only part of its reply was" if existing.replies else "its reply was never"
        raise UsageError(
            f"nothing to resume: the request was sent but {got} journaled. "
            + " ".join(_describe_orphan(o) for o in lost),
            hint="run without --resume to request new credentials (nrfprov keeps this note in the journal)")
    raise UsageError(f"nothing to resume in {journal_path}: the last run stopped before it requested anything",
                     hint="run without --resume to request new credentials")


#: What a journal holds, for a caller that must decide between a fresh run and ``--resume`` without
#: asking the user (``journal_state``).
NO_JOURNAL = "none"
FRESH = "fresh"  # nothing issued to continue with: a run requests (again); lost requests become orphans
RESUMABLE = "resumable"  # issued credentials (a bundle or usable raw replies) not yet proven: --resume
PROVEN = "proven"  # the reconnect proved the credentials: nothing to do unless --force
CONFLICT = "conflict"  # a reply conflict: never used, the user must move the journal away


def journal_state(existing: JournalRecord | None) -> str:
    """Which run the journal calls for: ``RESUMABLE`` exactly when a fresh run would be refused for
    unproven credentials (``_choose_fresh``) and ``--resume`` continues without a new request."""
    if existing is None:
        return NO_JOURNAL
    if existing.conflict:
        return CONFLICT
    if existing.proven:
        return PROVEN
    if existing.pending_bundle() is not None or _usable_replies(existing):
        return RESUMABLE
    return FRESH


def _choose_fresh(settings: Settings, existing: JournalRecord | None, journal_path: Path, *, flow: Flow,
                  payload_format: PayloadFormat, backend: Backend, imei: str, stored: StoredCertificate | None,
                  force: bool) -> RunChoice:
    orphans: list[dict[str, Any]] = list(existing.orphans) if existing else []
    notices: list[str] = []
    if existing is not None and journal_state(existing) == RESUMABLE:
        raise UsageError(
            f"{journal_path} holds credentials issued at {existing.started_at or '?'} that were never proven on "
            "this modem",
            hint="continue with --resume (no new certificate is requested), or move that file away to discard them")
    if existing is not None and not existing.proven and existing.requests:
        for r in existing.requests:
            if r.get("operation") != "register" and not r.get("rejected"):
                orphans.append(_orphan_of(r))
                notices.append(_describe_orphan(orphans[-1]))
    tag = settings.provisioned_sec_tag
    replaced = None
    if stored is not None:
        cert_id, thing = _identify(stored, existing)
        where = f"sec tag {tag} already holds a client certificate ({cert_id or 'SHA-256 of its PEM ' + stored.sha256}"
        where += f", thing {thing})" if thing else ")"
        if not force:
            raise AlreadyProvisioned(
                where + (" that this journal shows as proven" if thing else ""),
                sec_tag=tag, certificate_id=cert_id, thing_name=thing,
                hint="this modem is provisioned already; to replace its identity run again with --force, after "
                "allowing the thing another certificate where the cloud requires it (nrfprov's deployed handler "
                f"does: `nrfprov aws reprovision {thing or 'THING'}`); the old certificate is printed to revoke")
        replaced = {"certificate_id": cert_id, "sha256": stored.sha256, "thing_name": thing}
        notices.append(f"--force: replacing the certificate in sec tag {tag}: "
                       + (f"{cert_id}; revoke it: aws iot update-certificate --certificate-id {cert_id} "
                          "--new-status REVOKED" if cert_id else f"SHA-256 of its PEM {stored.sha256} (its id is "
                          "the SHA-256 of its DER; find it in AWS and revoke it)"))
    client_id = settings.device_client_id(imei) if imei else settings.client_id
    rec = JournalRecord(flow=flow, payload_format=payload_format, backend=backend, client_id=client_id,
                        provisioned_sec_tag=tag, orphans=orphans, replaced=replaced)
    return RunChoice(flow, payload_format, backend, client_id, tag, rec, None, notices=tuple(notices),
                     replaced=replaced, orphans=tuple(orphans))


def _identify(stored: StoredCertificate, existing: JournalRecord | None) -> tuple[str, str]:
    """(certificate id, thing name) of what the tag holds: from the journal when its SHA-256 matches."""
    bundle = existing.bundle if existing is not None else None
    if bundle and existing is not None and existing.proven:
        if sha256_hex(normalize_pem(str(bundle.get("certificate_pem", "")))) == stored.sha256.upper():
            return str(bundle.get("certificate_id", "")), str(bundle.get("thing_name") or existing.client_id)
    if stored.pem:
        try:
            return CredentialBundle(stored.pem, "").fingerprint(), ""
        except ValueError:
            return "", ""
    return "", ""


def _usable_replies(rec: JournalRecord) -> bool:
    """Do the journaled raw replies make a bundle? A Fleet Provisioning reply is one message; the split
    flow's is two, and a crash between them leaves half a pair that nothing can complete."""
    if not rec.replies or rec.bundle is not None:
        return False
    if rec.flow != "split":
        return True
    collector = flows.SplitCollector(rec.client_id)
    try:
        return any(collector.feed(topic, payload) is not None for topic, payload in rec.raw_replies())
    except NrfprovError:
        return False


def _orphan_of(request: dict[str, Any]) -> dict[str, Any]:
    op = str(request.get("operation", ""))
    out: dict[str, Any] = {"operation": op, "requested_at": request.get("at", ""),
                           "reason": "requested, reply lost"}
    if op == "split":
        out["thing_name"] = request.get("client_id", "")
    else:
        out["status"] = "PENDING_ACTIVATION"
    return out


def _describe_orphan(o: dict[str, Any]) -> str:
    """One sentence: what the cloud probably issued for a request whose reply was lost, and how to find it."""
    at = o.get("requested_at") or "?"
    if o.get("certificate_id"):
        return f"Orphaned certificate {o['certificate_id']} ({o.get('reason', '')})."
    if o.get("operation") == "split":
        thing = o.get("thing_name", "?")
        return (f"The split request at {at} probably issued an ACTIVE certificate for thing {thing} whose key is "
                f"lost: list it with `aws iot list-thing-principals --thing-name {thing}` and revoke it with "
                "`aws iot update-certificate --certificate-id ID --new-status REVOKED`. While it is active, "
                "nrfprov's deployed handler refuses another certificate for that thing until an operator allows "
                f"one: `nrfprov aws reprovision {thing}`.")
    return (f"The {o.get('operation')} request at {at} probably issued a PENDING_ACTIVATION certificate created at "
            "about that time; nothing can activate it without its ownership token, which lapses an hour after "
            "issue; list it with `aws iot list-certificates --query \"certificates[?status=='PENDING_ACTIVATION']\"` "
            "and remove it with `aws iot delete-certificate --certificate-id ID`.")


def describe_orphans(orphans: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[str]:
    return [_describe_orphan(o) for o in orphans]


def _csr_key(rec: JournalRecord) -> bytes | None:
    for r in rec.requests:
        if r.get("operation") == "create-from-csr" and r.get("csr_public_key"):
            return bytes.fromhex(str(r["csr_public_key"]))
    return None


def thing_candidates(client_id: str, parameters: dict[str, str], thing: str | None) -> tuple[str, ...]:
    """Thing names a RegisterThing may have created, most likely first: the one the user names, else
    the client id and the template parameter values that are valid thing names. A template that
    builds the name (``Fn::Join`` with a prefix) defeats the guess: docs/provisioning.md says how to
    finish then (``--thing``)."""
    if thing:
        return (thing,)
    out: list[str] = []
    for name in (client_id, *parameters.values()):
        if flows.THING_NAME_RE.fullmatch(name) and name not in out:
            out.append(name)
    return tuple(out)


def machine_plan(settings: Settings, choice: RunChoice, *, ca_pem: str, imei: str,
                 thing: str | None = None) -> m.Plan:
    params = flows.expand_parameters(settings.parameters(), imei=imei, client_id=choice.client_id)
    return m.Plan(
        flow=choice.flow, client_id=choice.client_id, provisioned_sec_tag=choice.provisioned_sec_tag,
        ca_pem=ca_pem, claim_sec_tag=settings.claim_sec_tag, payload_format=choice.payload_format,
        template=settings.template_name, parameters=params, response_timeout=float(settings.response_timeout),
        lte_timeout=float(settings.lte_timeout), resume=choice.resume, journaled_replies=choice.replies,
        csr_public_key=choice.csr_public_key, register_in_doubt=choice.register_in_doubt,
        thing_candidates=thing_candidates(choice.client_id, params, thing) if choice.register_in_doubt else (),
    )


def _journaled_names(rec: JournalRecord, path: Path) -> tuple[Flow, PayloadFormat]:
    for what, name, known in (("flow", rec.flow, FLOWS), ("payload format", rec.payload_format, FORMATS)):
        if name not in known:
            raise JournalError(f"the journal {path} names an unknown {what} {name!r}",
                               hint="it may hold issued credentials; inspect it before deleting it")
    return cast(Flow, rec.flow), cast(PayloadFormat, rec.payload_format)
