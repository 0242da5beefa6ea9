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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nrfprov.config import Settings
from nrfprov.errors import EXIT_INTERRUPTED, Interrupted, LocalProtocolError, NrfprovError, ResponseTimeout
from nrfprov.names import Backend, Flow, PayloadFormat
from nrfprov.provisioning import machine as m
from nrfprov.provisioning import plan
from nrfprov.provisioning.cas import read_ca
from nrfprov.provisioning.journal import Journal, JournalRecord
from nrfprov.transport.backends import ModemLike
from nrfprov.transport.base import ByteStream

if TYPE_CHECKING:
    from nrfprov.mqtt.session import MqttSession

log = logging.getLogger(__name__)

#: Per-operation MQTT timeout (SUBACK, PUBACK). The connect timeout (TCP, TLS handshake, CONNACK) is
#: CONFIG_NRFPROV_CONNECT_TIMEOUT_S (``Settings.connect_timeout``).
OPERATION_TIMEOUT = 30.0


class ProvisioningModem(ModemLike, Protocol):
    """The part of ``nrfprov.modem.Modem`` a run uses; sockets and modem TLS come from ``ModemLike``."""

    @property
    def dialect(self) -> str: ...

    @property
    def uart_bytes_sent(self) -> int: ...

    @property
    def uart_bytes_received(self) -> int: ...

    def imei(self) -> str: ...

    def cfun(self) -> int: ...

    def set_cfun(self, mode: int) -> None: ...

    def wait_registered(self, timeout: float) -> int: ...

    def delete_credential(self, sec_tag: int, type: int, missing_ok: bool = ...) -> bool: ...

    def write_credential(self, sec_tag: int, type: int, pem: str) -> str: ...

    def keygen_csr(self, sec_tag: int, attributes: str | None = ...) -> bytes: ...


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
        self._session: MqttSession | None = None
        self._filters: list[str] = []
        self._socket_bytes = 0
        self._record: JournalRecord | None = None
        # The functional mode the modem had when the run started, and whether the run changed it:
        # a run that does not finish puts exactly that mode back (run()'s finally).
        self._initial_cfun: int | None = None
        self._cfun_touched = False
        self.result: RunResult | None = None  # set when run() returns or raises
        self.machine: m.ProvisioningMachine | None = None

    # --- plan -----------------------------------------------------------------------------------

    def _plan(self) -> tuple[m.Plan, JournalRecord]:
        choice = plan.choose_run(self.settings, self.journal.load(), self.journal.path, flow=self.flow,
                                 payload_format=self.payload_format, backend=self.backend, resume=self.resume)
        self.flow, self.payload_format = choice.flow, choice.payload_format
        ca_pem = self._ca_pem if self._ca_pem is not None else read_ca(self.settings)
        return plan.machine_plan(self.settings, choice, ca_pem=ca_pem, imei=self.modem.imei()), choice.record

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

    def _uart_bytes(self) -> int:
        return self.modem.uart_bytes_sent + self.modem.uart_bytes_received

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
            self._connect(eff)
            return m.Connected()
        if isinstance(eff, m.Subscribe):
            self._live_session().subscribe([(t, 1) for t in eff.topics], OPERATION_TIMEOUT)
            self._filters = list(eff.topics)
            return m.Subscribed()
        if isinstance(eff, m.Publish):
            self._live_session().publish(eff.topic, eff.payload, eff.qos, OPERATION_TIMEOUT)
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
        session.connect(s.connect_timeout)

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
