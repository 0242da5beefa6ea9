"""What a provisioning run will do, decided before the driver touches the modem (no I/O here).

- :func:`check_combination` refuses flows, backends and settings that cannot work (exit 2);
- :func:`choose_run` settles a fresh run or a ``--resume`` from the journal's last record: a resume
  takes flow, format, client ID and sec tag from the journal (what was issued), not from today's
  configuration, and a fresh run is refused while unproven credentials sit in the journal;
- :func:`machine_plan` turns that choice, the CA text and the modem's IMEI into the machine's Plan.

The driver reads the journal, the CA file and the IMEI and hands them in; it then only executes
the machine's effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from nrfprov.config import Settings
from nrfprov.errors import JournalError, UsageError
from nrfprov.names import BACKENDS, FLEET_FLOWS, FLOWS, FORMATS, Backend, Flow, PayloadFormat
from nrfprov.provisioning import flows
from nrfprov.provisioning import machine as m
from nrfprov.provisioning.bundle import CredentialBundle
from nrfprov.provisioning.journal import JournalRecord


def check_combination(settings: Settings, flow: str, backend: str, *, claim_tag_needed: bool = True) -> None:
    """Refuse, before any I/O, combinations that cannot work (exit 2)."""
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
    if not settings.broker_host:
        raise UsageError("no broker endpoint", hint='set CONFIG_AWS_IOT_BROKER_HOST_NAME="<xxx>-ats.iot.<region>'
                         '.amazonaws.com" in prj.conf or with --set')
    if backend == "offload" and claim_tag_needed and settings.claim_sec_tag is None:
        raise UsageError(
            "the offload backend connects with the claim credentials in a modem sec tag, but none is set",
            hint="set CONFIG_AWS_IOT_SEC_TAG (Nordic's aws_iot_provisioning sample uses 43) and load the claim "
            "credentials there (nrfprov creds write)",
        )
    if settings.claim_sec_tag is not None and settings.claim_sec_tag == settings.provisioned_sec_tag:
        raise UsageError(
            f"claim and provisioned sec tag are both {settings.provisioned_sec_tag}: the write would "
            "destroy the claim credentials",
            hint="use another CONFIG_NRFPROV_PROVISIONED_SEC_TAG (Nordic's aws_iot_provisioning sample uses 50)")


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


def choose_run(settings: Settings, existing: JournalRecord | None, journal_path: Path, *, flow: Flow,
               payload_format: PayloadFormat, backend: Backend, resume: bool) -> RunChoice:
    pending = existing.pending_bundle() if existing else None
    if resume:
        if existing is None or pending is None:
            raise UsageError(
                f"nothing to resume in {journal_path}"
                + (" (the last run finished)" if existing and existing.status == "done" else ""),
                hint="run without --resume to request new credentials",
            )
        # The journal, not today's configuration, says what was issued and where it goes.
        flow, payload_format = _journaled_names(existing, journal_path)
        client_id, tag, rec = existing.client_id, existing.provisioned_sec_tag, existing
    else:
        if pending is not None:
            raise UsageError(
                f"{journal_path} holds credentials issued at {existing.started_at if existing else '?'} "
                "that were never proven on this modem",
                hint="continue with --resume (no new certificate is requested), or move that file away "
                "to discard them",
            )
        client_id, tag = settings.client_id, settings.provisioned_sec_tag
        rec = JournalRecord(flow=flow, payload_format=payload_format, backend=backend, client_id=client_id,
                            provisioned_sec_tag=tag)
    flows.check_client_id(client_id)
    check_combination(settings, flow, backend)
    return RunChoice(flow, payload_format, backend, client_id, tag, rec, pending if resume else None)


def machine_plan(settings: Settings, choice: RunChoice, *, ca_pem: str, imei: str) -> m.Plan:
    params = flows.expand_parameters(settings.parameters(), imei=imei, client_id=choice.client_id)
    return m.Plan(
        flow=choice.flow, client_id=choice.client_id, provisioned_sec_tag=choice.provisioned_sec_tag,
        ca_pem=ca_pem, claim_sec_tag=settings.claim_sec_tag, payload_format=choice.payload_format,
        template=settings.template_name, parameters=params, response_timeout=float(settings.response_timeout),
        lte_timeout=float(settings.lte_timeout), resume=choice.resume,
    )


def _journaled_names(rec: JournalRecord, path: Path) -> tuple[Flow, PayloadFormat]:
    for what, name, known in (("flow", rec.flow, FLOWS), ("payload format", rec.payload_format, FORMATS)):
        if name not in known:
            raise JournalError(f"the journal {path} names an unknown {what} {name!r}",
                               hint="it may hold issued credentials; inspect it before deleting it")
    return cast(Flow, rec.flow), cast(PayloadFormat, rec.payload_format)
