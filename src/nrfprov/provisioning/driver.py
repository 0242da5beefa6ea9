"""The driver: executes the machine's effects on the modem, the transports and MQTT.

The machine decides *what* happens and in which order; this module only knows *how*: one modem
(``nrfprov.modem.Modem``), at most one MQTT session at a time, the journal, and the clock. Every
effect is answered with the event the machine expects; while the machine waits for replies the
driver blocks on the MQTT session until a message arrives or the machine's deadline passes.

TLS for each connection:

- claim identity: ``offload`` → the modem's TLS with the claim sec tag; ``native`` → host mbedTLS
  over a modem TCP socket with the certs folder (``ca-cert.pem``, ``client-cert.pem``,
  ``private-key.pem``, as the sample's native-TLS overlay loads them); ``host`` → the same
  credentials over the host's own TCP (a factory station);
- provisioned identity: ``offload`` and every ``csr`` run → the modem's TLS with the provisioned
  sec tag (the CSR key never leaves the modem); ``native`` / ``host`` → the new credentials, in
  memory, in host mbedTLS.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from nrfprov.config import Settings
from nrfprov.errors import ConfigError, JournalError, NrfprovError, ResponseTimeout, UsageError
from nrfprov.names import BACKENDS, FLEET_FLOWS, FLOWS, FORMATS, Backend, Flow, PayloadFormat
from nrfprov.provisioning import flows
from nrfprov.provisioning import machine as m
from nrfprov.provisioning.bundle import CredentialBundle
from nrfprov.provisioning.journal import Journal, JournalRecord

log = logging.getLogger(__name__)

#: MQTT CONNECT (incl. TLS handshake over a throttled UART) and per-operation timeouts.
CONNECT_TIMEOUT = 90.0
OPERATION_TIMEOUT = 30.0


@dataclass(frozen=True)
class StepReport:
    state: m.State
    detail: str
    seconds: float  # since the run started


@dataclass
class RunResult:
    ok: bool
    flow: Flow
    payload_format: PayloadFormat
    backend: Backend
    dialect: str
    client_id: str
    thing_name: str = ""
    certificate_id: str = ""
    seconds: float = 0.0
    uart_bytes: int = 0
    socket_bytes: int = 0
    resumed: bool = False
    steps: list[StepReport] = field(default_factory=list)
    error: str = ""
    error_type: str = ""
    exit_code: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "flow": self.flow, "format": self.payload_format, "backend": self.backend,
            "dialect": self.dialect, "client_id": self.client_id, "thing_name": self.thing_name,
            "certificate_id": self.certificate_id, "seconds": round(self.seconds, 3),
            "uart_bytes": self.uart_bytes, "socket_bytes": self.socket_bytes, "resumed": self.resumed,
            "steps": [{"step": s.state.value, "detail": s.detail, "seconds": round(s.seconds, 3)}
                      for s in self.steps],
            "error": self.error, "error_type": self.error_type, "exit_code": self.exit_code,
        }


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
            hint="set CONFIG_AWS_IOT_SEC_TAG (the sample uses 43) and load the claim credentials there "
            "(nrfprov creds write)",
        )
    if settings.claim_sec_tag is not None and settings.claim_sec_tag == settings.provisioned_sec_tag:
        raise UsageError(
            f"claim and provisioned sec tag are both {settings.provisioned_sec_tag}: the write would "
            "destroy the claim credentials", hint="use another CONFIG_NRFPROV_PROVISIONED_SEC_TAG (sample: 50)")


#: Where the built-in Amazon Root CA 1 and 3 live: the source checkout's certs/, or package data.
_BUILTIN_CA_DIRS = (Path(__file__).resolve().parents[3] / "certs", Path(__file__).resolve().parents[1] / "data")
_BUILTIN_CAS = ("AmazonRootCA1.pem", "AmazonRootCA3.pem")
#: A CA bundle is a few KB; 64 KB bounds a wrong path pointing at something large.
_CA_FILE_LIMIT = 64 * 1024


def _read_text(path: Path) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read(_CA_FILE_LIMIT)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the CA file: {exc}", path=str(path)) from exc


def read_ca(settings: Settings) -> str:
    """The CA written into the provisioned sec tag (type 0).

    ``CONFIG_NRFPROV_CA_FILE``; else the certs folder's ``ca-cert.pem`` (the anchor the claim
    connection trusts); else Amazon Root CA 1 + 3. The sample writes CA 1 only, but AWS picks the
    server chain by the negotiated suite (RSA → CA 1, ECDSA → CA 3 [AWS IoT developer guide,
    server-authentication]) and the modem offers ECDSA suites, so both go in; together they are ~1.9 KB,
    well inside one %CMNG command.
    """
    if settings.ca_file:
        return _read_text(Path(settings.ca_file))
    folder_ca = Path(settings.certs_dir) / "ca-cert.pem"
    if folder_ca.is_file():
        return _read_text(folder_ca)
    for d in _BUILTIN_CA_DIRS:
        if all((d / name).is_file() for name in _BUILTIN_CAS):
            return "".join(_read_text(d / name).strip() + "\n" for name in _BUILTIN_CAS)
    raise ConfigError(
        "no CA to write: CONFIG_NRFPROV_CA_FILE is unset and neither the certs folder's ca-cert.pem nor "
        "the built-in Amazon Root CA 1/3 were found", path=str(folder_ca),
        hint="set CONFIG_NRFPROV_CA_FILE to the PEM of the CA that signs your endpoint",
    )


class Driver:
    """One provisioning run against one modem. ``run()`` returns a RunResult or raises NrfprovError."""

    def __init__(
        self,
        settings: Settings,
        modem: Any,
        *,
        state_dir: str | Path,
        flow: Flow | None = None,
        payload_format: PayloadFormat | None = None,
        resume: bool = False,
        ca_pem: str | None = None,
        progress: Callable[[StepReport], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        utc: Callable[[], _dt.datetime] = lambda: _dt.datetime.now(_dt.UTC),
    ) -> None:
        self.settings = settings
        self.modem = modem
        self.journal = Journal(state_dir)
        self.flow = flow or settings.flow
        self.payload_format = payload_format or settings.payload_format
        self.backend = settings.tls_backend
        self.resume = resume
        self._ca_pem = ca_pem
        self._progress = progress
        self._clock = clock
        self._utc = utc
        self._session: Any = None
        self._filters: list[str] = []
        self._socket_bytes = 0
        self._record: JournalRecord | None = None
        # True while this run holds the modem offline (CFUN=0/4): undone in run()'s finally.
        self._offline_by_us = False
        self.result: RunResult | None = None  # set when run() returns or raises
        self.machine: m.ProvisioningMachine | None = None

    # --- plan -----------------------------------------------------------------------------------

    def _plan(self) -> tuple[m.Plan, JournalRecord]:
        s = self.settings
        existing = self.journal.load()
        pending = existing.pending_bundle() if existing else None
        if self.resume:
            if existing is None or pending is None:
                raise UsageError(
                    f"nothing to resume in {self.journal.path}"
                    + (" (the last run finished)" if existing and existing.status == "done" else ""),
                    hint="run without --resume to request new credentials",
                )
            # The journal, not today's configuration, says what was issued and where it goes.
            self.flow, self.payload_format = _journaled_names(existing, self.journal.path)
            client_id, tag = existing.client_id, existing.provisioned_sec_tag
            rec = existing
        else:
            if pending is not None:
                raise UsageError(
                    f"{self.journal.path} holds credentials issued at {existing.started_at if existing else '?'} "
                    "that were never proven on this modem",
                    hint="continue with --resume (no new certificate is requested), or move that file away "
                    "to discard them",
                )
            client_id = s.client_id
            tag = s.provisioned_sec_tag
            rec = JournalRecord(flow=self.flow, payload_format=self.payload_format, backend=self.backend,
                                client_id=client_id, provisioned_sec_tag=tag)
        flows.check_client_id(client_id)
        check_combination(s, self.flow, self.backend)
        ca_pem = self._ca_pem if self._ca_pem is not None else read_ca(s)
        imei = self.modem.imei()
        params = flows.expand_parameters(s.parameters(), imei=imei, client_id=client_id)
        plan = m.Plan(
            flow=self.flow, client_id=client_id, provisioned_sec_tag=tag, ca_pem=ca_pem,
            claim_sec_tag=s.claim_sec_tag, payload_format=self.payload_format, template=s.template_name,
            parameters=params, response_timeout=float(s.response_timeout), lte_timeout=float(s.lte_timeout),
            resume=pending if self.resume else None,
        )
        return plan, rec

    # --- run ------------------------------------------------------------------------------------

    def run(self) -> RunResult:
        t0 = self._clock()
        uart0 = self._uart_bytes()
        result = RunResult(False, self.flow, self.payload_format, self.backend, "", self.settings.client_id,
                           resumed=self.resume)
        try:
            if self.backend == "native":
                self.modem.check_raw_binary_safe()  # legacy SLM with "+++" cannot carry ciphertext
            result.dialect = self.modem.dialect
            plan, rec = self._plan()
            result.flow, result.payload_format, result.client_id = plan.flow, plan.payload_format, plan.client_id
            self._record = self.journal.begin(rec)
            machine = m.ProvisioningMachine(plan)
            self.machine = machine
            self._loop(machine, result, t0)
            self.journal.finish(self._record)
            result.ok = True
            assert machine.bundle is not None
            result.thing_name = machine.reconnect_client_id
            result.certificate_id = machine.bundle.certificate_id
        except NrfprovError as exc:
            result.error, result.error_type, result.exit_code = str(exc), type(exc).__name__, exc.exit_code
            if self._record is not None:
                try:
                    self.journal.fail(self._record, exc)
                except NrfprovError as jexc:
                    log.error("%s", jexc)
            raise
        except KeyboardInterrupt as exc:
            # Journal the interruption; issued credentials stay resumable with --resume.
            result.error, result.error_type, result.exit_code = "interrupted", "KeyboardInterrupt", 130
            if self._record is not None:
                try:
                    self.journal.fail(self._record, exc)
                except NrfprovError as jexc:
                    log.error("%s", jexc)
            raise
        finally:
            self._close_session()
            self._restore_online()
            result.seconds = self._clock() - t0
            result.uart_bytes = self._uart_bytes() - uart0
            result.socket_bytes = self._socket_bytes
            self.result = result
        return result

    def _uart_bytes(self) -> int:
        return int(getattr(self.modem, "uart_bytes_sent", 0)) + int(getattr(self.modem, "uart_bytes_received", 0))

    def _loop(self, machine: m.ProvisioningMachine, result: RunResult, t0: float) -> None:
        first: m.Event = m.Resumed(self._utc()) if self.resume else m.Started(self._utc())
        machine.receive_event(first, self._clock())
        while True:
            eff = machine.next_effect()
            if eff is not None:
                ev = self._execute(eff, result, t0)
                if ev is not None:
                    machine.receive_event(ev, self._clock())
                continue
            if machine.finished:
                return
            self._wait_for_reply(machine)

    def _wait_for_reply(self, machine: m.ProvisioningMachine) -> None:
        deadline = machine.next_deadline()
        assert deadline is not None and self._session is not None, "the machine waits without a deadline"
        timeout = max(0.0, deadline - self._clock())
        try:
            msg = self._session.wait_any(self._filters, timeout)
        except ResponseTimeout:
            machine.handle_timer(max(self._clock(), deadline))
            return
        machine.receive_event(m.MessageReceived(msg.topic, bytes(msg.payload), self._utc()), self._clock())

    # --- effects --------------------------------------------------------------------------------

    def _execute(self, eff: m.Effect, result: RunResult, t0: float) -> m.Event | None:
        log.debug("effect %r", eff)
        modem = self.modem
        if isinstance(eff, m.SetFunctionalMode):
            modem.set_cfun(eff.mode)
            self._offline_by_us = eff.mode in (0, 4)
            return m.FunctionalModeSet(eff.mode)
        if isinstance(eff, m.WaitForRegistration):
            modem.wait_registered(eff.timeout)
            return m.LteRegistered()
        if isinstance(eff, m.DeleteCredential):
            modem.delete_credential(eff.sec_tag, eff.cred_type, missing_ok=True)
            return m.CredentialDeleted(eff.sec_tag, eff.cred_type)
        if isinstance(eff, m.GenerateKey):
            return m.KeyGenerated(modem.keygen_csr(eff.sec_tag))
        if isinstance(eff, m.WriteCredential):
            sha = modem.write_credential(eff.sec_tag, eff.cred_type, eff.content)
            return m.CredentialWritten(eff.sec_tag, eff.cred_type, sha)
        if isinstance(eff, m.ConnectMqtt):
            self._connect(eff)
            return m.Connected()
        if isinstance(eff, m.Subscribe):
            self._session.subscribe([(t, 1) for t in eff.topics], OPERATION_TIMEOUT)
            self._filters = list(eff.topics)
            return m.Subscribed()
        if isinstance(eff, m.Publish):
            self._session.publish(eff.topic, eff.payload, eff.qos, OPERATION_TIMEOUT)
            return m.Published()
        if isinstance(eff, m.Disconnect):
            self._close_session()
            return m.Disconnected()
        if isinstance(eff, m.ClearSubscriptions):
            # The sample's aws_iot_subscription_topics_clear(): the next session subscribes to nothing
            # (the provisioned policy would refuse certificate/... topics).
            self._filters = []
            return m.SubscriptionsCleared()
        assert self._record is not None
        if isinstance(eff, m.SaveBundle):
            self.journal.save_bundle(self._record, eff.bundle)
        elif isinstance(eff, m.StepFinished):
            self.journal.record_step(self._record, eff.state.value, eff.detail)
            report = StepReport(eff.state, eff.detail, self._clock() - t0)
            result.steps.append(report)
            if self._progress is not None:
                self._progress(report)
        elif isinstance(eff, m.EraseKeyMaterial):
            self.journal.erase_key_material(self._record)
        return None

    def _connect(self, eff: m.ConnectMqtt) -> None:
        from nrfprov.mqtt.session import MqttSession

        self._close_session()
        s = self.settings
        factory = self._stream_factory(eff)
        # The proof connection speaks MQTT 5 whatever the device uses: a 3.1.1 broker may PUBACK a
        # publish its policy drops (mosquitto does), while an MQTT 5 PUBACK carries the refusal (0x87).
        v5 = s.mqtt_v5 or eff.identity is m.Identity.PROVISIONED
        # Keepalive, clean session and (device-mirror mode) the payload limit with its symbol.
        session = MqttSession.from_settings(s, factory, eff.client_id, mqtt_v5=v5)
        self._session = session
        session.connect(CONNECT_TIMEOUT)

    def _stream_factory(self, eff: m.ConnectMqtt) -> Callable[[], Any]:
        from nrfprov.transport import TlsCredentials, open_stream

        s = self.settings
        if eff.identity is m.Identity.CLAIM:
            # offload: claim sec tag; native/host: the certs folder (open_stream's default).
            return lambda: open_stream(s, modem=self.modem, backend=self.backend, sec_tag=eff.sec_tag,
                                       timeout=CONNECT_TIMEOUT)
        if self.backend == "offload" or self.flow == "csr":
            # The CSR key exists only inside the modem: its own TLS is the only way to use it.
            return lambda: open_stream(s, modem=self.modem, backend="offload", sec_tag=eff.sec_tag,
                                       timeout=CONNECT_TIMEOUT)
        assert eff.bundle is not None and eff.bundle.private_key_pem is not None
        creds = TlsCredentials.from_pems(eff.bundle.ca_pem, eff.bundle.certificate_pem,
                                         eff.bundle.private_key_pem, source="issued credentials")
        return lambda: open_stream(s, modem=self.modem, backend=self.backend, credentials=creds,
                                   timeout=CONNECT_TIMEOUT)

    def _restore_online(self) -> None:
        """Never leave the modem offline behind the user's back after a failure or Ctrl-C (Nordic's
        credential tools do, and the device then looks dead). A later --resume goes offline again."""
        if not self._offline_by_us:
            return
        try:
            self.modem.set_cfun(1)
            self._offline_by_us = False
        except NrfprovError as exc:  # best effort: the error that ended the run is already propagating
            log.warning("the modem is still offline (CFUN=4): %s; bring it back with AT+CFUN=1 "
                        "(nrfprov at --port PORT AT+CFUN=1)", exc)

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            for layer in session.counters()[-1:]:
                self._socket_bytes += int(layer.get("bytes_sent", 0)) + int(layer.get("bytes_received", 0))
        except (NrfprovError, AttributeError, TypeError, ValueError):
            pass
        session.disconnect()


def _journaled_names(rec: JournalRecord, path: Path) -> tuple[Flow, PayloadFormat]:
    for what, name, known in (("flow", rec.flow, FLOWS), ("payload format", rec.payload_format, FORMATS)):
        if name not in known:
            raise JournalError(f"the journal {path} names an unknown {what} {name!r}",
                               hint="it may hold issued credentials; inspect it before deleting it")
    return cast(Flow, rec.flow), cast(PayloadFormat, rec.payload_format)


def bundle_from_journal(state_dir: str | Path) -> CredentialBundle | None:
    rec = Journal(state_dir).load()
    return rec.pending_bundle() if rec else None
