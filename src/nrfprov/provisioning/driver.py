"""The driver: executes the machine's effects on the modem, the transports and MQTT.

The machine decides *what* happens and in which order; this module only knows *how*: one modem
(``nrfprov.modem.Modem``), at most one MQTT session at a time, the journal, and the clock. Every
effect is answered with the event the machine expects; while the machine waits for replies the
driver blocks on the MQTT session until a message arrives or the machine's deadline passes.

TLS for each connection:

- claim identity: ``offload`` → the modem's TLS with the claim sec tag; ``native`` → host mbedTLS
  over a modem TCP socket with the certs folder (``ca-cert.pem``, ``client-cert.pem``,
  ``private-key.pem``, as Nordic's aws_iot_provisioning sample's native-TLS overlay loads them); ``host`` → the same
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
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nrfprov.config import Settings
from nrfprov.errors import (
    EXIT_INTERRUPTED,
    CommandError,
    ConnectThrottled,
    Interrupted,
    LocalProtocolError,
    NrfprovError,
    ResponseTimeout,
    TransportError,
    UsageError,
)
from nrfprov.names import Flow, PayloadFormat
from nrfprov.provisioning import machine as m
from nrfprov.provisioning import plan, preflight
from nrfprov.provisioning.bundle import TYPE_CA, TYPE_CERT, TYPE_KEY, normalize_pem, sha256_hex
from nrfprov.provisioning.inputs import read_inputs
from nrfprov.provisioning.journal import Journal, JournalRecord
from nrfprov.provisioning.results import ProvisioningModem, RunResult, StepReport
from nrfprov.transport.base import ByteStream

if TYPE_CHECKING:
    from nrfprov.mqtt.session import MqttSession

log = logging.getLogger(__name__)

#: Per-operation MQTT timeout (SUBACK, PUBACK). The connect timeout (TCP, TLS handshake, CONNACK) is
#: CONFIG_NRFPROV_CONNECT_TIMEOUT_S (``Settings.connect_timeout``).
OPERATION_TIMEOUT = 30.0
#: CONNECTs made before a hang-up (one CONNECT per second per client ID) is reported.
CONNECT_ATTEMPTS = 3


class Driver:
    """One provisioning run against one modem. ``run()`` returns a RunResult or raises NrfprovError."""

    def __init__(
        self,
        settings: Settings,
        modem: ProvisioningModem,
        *,
        state_dir: str | Path,
        flow: Flow | None = None,
        payload_format: PayloadFormat | None = None,
        resume: bool = False,
        force: bool = False,
        thing: str | None = None,
        ca_pem: str | None = None,
        progress: Callable[[StepReport], None] | None = None,
        before_effect: Callable[[m.Effect], None] | None = None,
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
        #: Replace a client certificate the provisioned sec tag already holds (``--force``).
        self.force = force
        #: The thing name to try first when a resumed RegisterThing is in doubt (``--thing``).
        self.thing = thing
        self._ca_pem = ca_pem
        self._received_at = 0.0  # when the MQTT layer decoded the message being handled
        self._progress = progress
        #: Called with each effect before it runs; it may wait (a station's cloud request rate) or
        #: raise ``Interrupted`` to end the run there (journaled, the modem's mode restored).
        self._before_effect = before_effect
        self._clock = clock
        self._utc = utc
        self._session: MqttSession | None = None
        self._filters: list[str] = []
        # The last ConnectMqtt, to connect again when a pipelined CONNECT turns out throttled.
        self._connect_effect: m.ConnectMqtt | None = None
        self._socket_bytes = 0
        self._record: JournalRecord | None = None
        # The functional mode the modem had when the run started, and whether the run changed it:
        # a run that does not finish puts exactly that mode back (run()'s finally).
        self._initial_cfun: int | None = None
        self._cfun_touched = False
        self.result: RunResult | None = None  # set when run() returns or raises
        self.machine: m.ProvisioningMachine | None = None

    # --- plan -----------------------------------------------------------------------------------

    def _plan(self, result: RunResult) -> tuple[m.Plan | None, JournalRecord]:
        """Read what the decisions need (journal, IMEI, the sec tag, local files), let ``plan`` decide.

        Every local input is checked here, before anything is requested from the cloud and before
        the modem leaves its functional mode (docs/provisioning.md). ``None`` as plan: the journal
        shows a run already proven, and ``--resume`` has nothing to do.
        """
        existing = self.journal.load()
        for note in self.journal.recovered:
            log.warning("journal %s: %s", self.journal.dir, note)
        imei = self.modem.imei()
        tag = existing.provisioned_sec_tag if self.resume and existing else self.settings.provisioned_sec_tag
        preflight.check_sec_tags(provisioned=tag, claim=self.settings.claim_sec_tag, backend=self.backend)
        stored = None if self.resume else self._stored_certificate(tag, existing)
        choice = plan.choose_run(self.settings, existing, self.journal.path, flow=self.flow,
                                 payload_format=self.payload_format, backend=self.backend, resume=self.resume,
                                 imei=imei, stored=stored, force=self.force)
        result.notices += choice.notices
        result.orphans = list(choice.orphans)
        result.replaced = choice.replaced
        for notice in choice.notices:
            log.warning("%s", notice)
        self.flow, self.payload_format = choice.flow, choice.payload_format
        if choice.finished:
            return None, choice.record
        inputs = read_inputs(self.settings, self.backend)
        ca_pem = self._ca_pem if self._ca_pem is not None else inputs.ca_pem
        mplan = plan.machine_plan(self.settings, choice, ca_pem=ca_pem, imei=imei, thing=self.thing)
        plan.check_inputs(self.settings, replace(inputs, ca_pem=ca_pem), flow=choice.flow, backend=self.backend,
                          sec_tag=choice.provisioned_sec_tag, client_id=choice.client_id,
                          parameters=dict(mplan.parameters), now=self._utc())
        if self.backend == "offload" and m.State.CONNECT_CLAIM in mplan.steps():
            self._check_claim_tag()
        return mplan, choice.record

    def _stored_certificate(self, tag: int, existing: JournalRecord | None) -> plan.StoredCertificate | None:
        """The client certificate already in ``tag`` (a %CMNG list; the PEM too when it is not ours)."""
        certs = [c for c in self.modem.credentials(tag) if int(c.type) == TYPE_CERT]
        if not certs:
            return None
        sha = (certs[0].sha256 or "").upper()
        journaled = str(((existing.bundle or {}) if existing else {}).get("certificate_pem", ""))
        if journaled and sha256_hex(normalize_pem(journaled)) == sha:
            return plan.StoredCertificate(sha)
        return plan.StoredCertificate(sha, self._read_certificate(tag))

    def _read_certificate(self, tag: int) -> str | None:
        """``AT%CMNG=2`` (read): the stored PEM, or None when the modem does not give it out."""
        try:
            lines = self.modem.at(f"AT%CMNG=2,{tag},{TYPE_CERT}")
        except NrfprovError as exc:
            log.info("cannot read the certificate in sec tag %d: %s", tag, exc)
            return None
        parts = "\n".join(lines).split('"')  # %CMNG: <tag>,<type>,"<sha256>","<content>"
        return parts[3] if len(parts) >= 5 and "BEGIN CERTIFICATE" in parts[3] else None

    def _check_claim_tag(self) -> None:
        """``offload``: the claim identity must be in its sec tag, or the claim connect cannot work."""
        tag = self.settings.claim_sec_tag
        assert tag is not None  # check_combination refused offload without a claim tag
        present = {int(c.type) for c in self.modem.credentials(tag)}
        missing = [name for t, name in ((TYPE_CA, "CA"), (TYPE_CERT, "certificate"), (TYPE_KEY, "private key"))
                   if t not in present]
        if missing:
            raise UsageError(f"the claim sec tag {tag} lacks the claim {', '.join(missing)}",
                             hint=f"load the claim credentials: nrfprov creds write --port PORT {tag} ca|cert|key FILE")

    # --- run ------------------------------------------------------------------------------------

    def run(self) -> RunResult:
        t0 = self._clock()
        # One run per journal folder: a second one is refused here, before anything is asked.
        folder_lock = self.journal.lock().acquire()
        uart0 = self._uart_bytes()
        result = RunResult(False, self.flow, self.payload_format, self.backend, "", self.settings.client_id,
                           resumed=self.resume)
        try:
            self._initial_cfun = self.modem.cfun()
            if self.backend == "native":
                self.modem.check_raw_binary_safe()  # legacy SLM with "+++" cannot carry ciphertext
            result.dialect = self.modem.dialect
            plan, rec = self._plan(result)
            if plan is None:
                return self._already_proven(result, rec)
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
            # Ctrl-C, SIGTERM and SIGHUP (nrfprov.interrupts.Interrupted): journal the interruption;
            # issued credentials stay resumable with --resume.
            result.error, result.error_type = "interrupted", type(exc).__name__
            result.exit_code = exc.exit_code if isinstance(exc, Interrupted) else EXIT_INTERRUPTED
            if self._record is not None:
                try:
                    self.journal.fail(self._record, exc)
                except NrfprovError as jexc:
                    log.error("%s", jexc)
            raise
        finally:
            try:
                try:
                    self._close_session()
                finally:  # whatever closing the session did, the modem gets its mode back
                    self._restore_functional_mode(result.ok)
            finally:
                result.seconds = self._clock() - t0
                result.uart_bytes = self._uart_bytes() - uart0
                result.socket_bytes = self._socket_bytes
                self.result = result
                folder_lock.release()
        return result

    def _already_proven(self, result: RunResult, rec: JournalRecord) -> RunResult:
        """``--resume`` of a run whose proof is journaled (perhaps killed before ``done``): mark it done."""
        if rec.status != "done":
            self.journal.finish(rec)
        bundle = rec.bundle or {}
        result.ok = True
        result.thing_name = str(bundle.get("thing_name") or rec.client_id)
        result.certificate_id = str(bundle.get("certificate_id", ""))
        return result

    def _uart_bytes(self) -> int:
        return self.modem.uart_bytes_sent + self.modem.uart_bytes_received

    def _loop(self, machine: m.ProvisioningMachine, result: RunResult, t0: float) -> None:
        first: m.Event = m.Resumed(self._utc()) if self.resume else m.Started(self._utc())
        machine.receive_event(first, self._clock())
        while True:
            eff = machine.next_effect()
            if eff is not None:
                if self._before_effect is not None:
                    self._before_effect(eff)
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
        self._received_at = msg.received_at
        machine.receive_event(m.MessageReceived(msg.topic, bytes(msg.payload), self._utc(), retained=msg.retain),
                              self._clock())

    # --- effects --------------------------------------------------------------------------------

    def _execute(self, eff: m.Effect, result: RunResult, t0: float) -> m.Event | None:
        log.debug("effect %r", eff)
        modem = self.modem
        if isinstance(eff, m.SetFunctionalMode):
            self._cfun_touched = True  # before the command: an interrupt during it must still restore
            modem.set_cfun(eff.mode)  # a timed-out change is checked against the real mode (Modem.set_cfun)
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
            try:
                self._connect(eff)
            except (TransportError, CommandError) as exc:
                if not eff.probe:
                    raise
                self._close_session()
                log.info("probe as %s: connect failed: %s", eff.client_id, exc)
                return m.ProbeFailed("connect", str(exc))
            return m.Connected()
        if isinstance(eff, m.Subscribe):
            topics = [(t, 1) for t in eff.topics]
            self._session_call(lambda session: session.subscribe(topics, OPERATION_TIMEOUT), resubscribe=False)
            self._filters = list(eff.topics)
            return m.Subscribed()
        if isinstance(eff, m.Publish):
            self._discard_queued(eff.discard_queued)
            try:
                self._session_call(lambda session: session.publish(eff.topic, eff.payload, eff.qos, OPERATION_TIMEOUT))
            except TransportError as exc:
                if not eff.probe:
                    raise
                self._close_session()
                log.info("probe: the proof to %s was refused: %s", eff.topic, exc)
                return m.ProbeFailed("publish", str(exc))
            return m.Published()
        if isinstance(eff, m.Disconnect):
            self._close_session()
            return m.Disconnected()
        if isinstance(eff, m.ClearSubscriptions):
            # Nordic's aws_iot_provisioning sample's aws_iot_subscription_topics_clear(): the next session
            # subscribes to nothing (the provisioned policy would refuse certificate/... topics).
            self._filters = []
            return m.SubscriptionsCleared()
        assert self._record is not None
        if isinstance(eff, m.SaveReply):
            saved = self.journal.save_reply(self._record, eff.topic, eff.payload)
            if saved and self._received_at and eff.topic.endswith(("/accepted", "/accepted/key")):
                if self.flow != "csr":  # a CSR reply carries no key: the key never left the modem
                    result.key_window_ms = (time.monotonic() - self._received_at) * 1000.0
            return m.ReplySaved()
        if isinstance(eff, m.SaveIntent):
            self.journal.record_request(self._record, _intent_record(eff.intent))
        elif isinstance(eff, m.MessageIgnored):
            log.warning("ignored a message on %s: %s", eff.topic, eff.reason)
        elif isinstance(eff, m.SaveBundle):
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

    def _discard_queued(self, filters: tuple[str, ...]) -> None:
        """Drop what waits on a request's reply topics before it is sent: those are not its replies."""
        if not filters or self._session is None:
            return
        for f in filters:
            for msg in self._session.messages(f):
                log.warning("ignored a message on %s: it arrived before this run's request was sent", msg.topic)

    def _connect(self, eff: m.ConnectMqtt) -> None:
        from nrfprov.mqtt.session import MqttSession

        self._close_session()
        s = self.settings
        factory = self._stream_factory(eff)
        # The proof connection speaks MQTT 5 whatever the device uses: a 3.1.1 broker may PUBACK a
        # publish its policy drops (mosquitto does), while an MQTT 5 PUBACK carries the refusal (0x87).
        v5 = s.mqtt_v5 or eff.identity is m.Identity.PROVISIONED
        self._connect_effect = eff
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            # Keepalive, clean session and (device-mirror mode) the payload limit with its symbol.
            session = MqttSession.from_settings(s, factory, eff.client_id, mqtt_v5=v5)
            self._session = session
            try:
                session.connect(s.connect_timeout)
                return
            except ConnectThrottled:
                # AWS IoT allows one CONNECT per second per client ID: a run started right after an
                # interrupted one meets its last CONNECT. The session's spacer waits the interval
                # before the next attempt; a device that really shares the client ID fails every time.
                self._session = None
                if attempt == CONNECT_ATTEMPTS:
                    raise
                log.info("CONNECT as %s hung up (attempt %d); trying again after the interval", eff.client_id,
                         attempt)

    def _stream_factory(self, eff: m.ConnectMqtt) -> Callable[[], ByteStream]:
        from nrfprov.transport import TlsCredentials, open_stream

        s = self.settings
        if eff.identity is m.Identity.CLAIM:
            # offload: claim sec tag; native/host: the certs folder (open_stream's default).
            return lambda: open_stream(s, modem=self.modem, backend=self.backend, sec_tag=eff.sec_tag,
                                       timeout=s.connect_timeout)
        if self.backend == "offload" or self.flow == "csr":
            # The CSR key exists only inside the modem: its own TLS is the only way to use it.
            return lambda: open_stream(s, modem=self.modem, backend="offload", sec_tag=eff.sec_tag,
                                       timeout=s.connect_timeout)
        assert eff.bundle is not None and eff.bundle.private_key_pem is not None
        creds = TlsCredentials.from_pems(eff.bundle.ca_pem, eff.bundle.certificate_pem,
                                         eff.bundle.private_key_pem, source="issued credentials")
        return lambda: open_stream(s, modem=self.modem, backend=self.backend, credentials=creds,
                                   timeout=s.connect_timeout)

    def _restore_functional_mode(self, finished: bool) -> None:
        """A run that did not finish (failure, Ctrl-C, SIGTERM, SIGHUP) puts back the functional mode
        the modem had when it started; it never leaves the modem offline behind the user's back
        (Nordic's credential tools do, and the device then looks dead). A later --resume changes it
        again. A finished run leaves the modem online: the reconnect proved the new identity there.

        The mode is read, not assumed: a CFUN change that timed out may have happened late."""
        initial = self._initial_cfun
        if finished or not self._cfun_touched or initial is None:
            return
        try:
            current = self.modem.cfun()
            if current != initial:
                log.info("restoring CFUN=%d (the mode before the run; now CFUN=%d)", initial, current)
                self.modem.set_cfun(initial)
            self._cfun_touched = False
        except NrfprovError as exc:  # best effort: the error that ended the run is already propagating
            log.warning("the modem may not be in CFUN=%d, its mode before the run: %s; set it with "
                        "nrfprov at --port PORT AT+CFUN=%d", initial, exc, initial)

    def _session_call(self, op: Callable[[MqttSession], object], *, resubscribe: bool = True) -> None:
        """Run ``op`` on the live session, repeating it after a throttled CONNECT.

        A pipelined CONNECT (``CONFIG_NRFPROV_MQTT_PIPELINE``) returns before its CONNACK, so a broker that
        hangs up on it under AWS IoT's one-CONNECT-per-second quota is noticed by the first operation
        after it, not in ``_connect``. As ``_connect`` does for an unpipelined CONNECT: connect again (the
        session's spacer waits the interval), subscribe again to what this session had, and repeat
        ``op``. A server processes nothing after a CONNECT it refused (MQTT 5.0 §3.1.4), so nothing is
        sent twice. Checked before a probe reads a failure as a refused proof.
        """
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                op(self._live_session())
                return
            except ConnectThrottled:
                again = self._connect_effect
                if attempt == CONNECT_ATTEMPTS or again is None:
                    raise
                log.info("CONNECT as %s hung up (seen after it, attempt %d); connecting again", again.client_id,
                         attempt)
                self._connect(again)
                if resubscribe and self._filters:
                    self._live_session().subscribe([(t, 1) for t in self._filters], OPERATION_TIMEOUT)

    def _live_session(self) -> MqttSession:
        if self._session is None:
            raise LocalProtocolError("the machine asked for MQTT before ConnectMqtt")
        return self._session

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        for wire in session.counters()[-1:]:  # the innermost stream: what crossed the socket
            self._socket_bytes += wire["bytes_sent"] + wire["bytes_received"]
        session.disconnect()


def _intent_record(intent: m.RequestIntent) -> dict[str, Any]:
    out = asdict(intent)
    out["parameters"] = dict(intent.parameters)
    return out
