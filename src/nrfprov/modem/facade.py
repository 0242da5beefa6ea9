"""``Modem``: the nRF91 over its serial AT interface, as typed Python calls.

Opened with ``serial.serial_for_url``, so ``/dev/ttyACM0``, ``COM3``, pty paths, ``socket://``,
``rfc2217://`` and ``loop://`` all work. One reader thread (in :class:`AtChannel`) owns the port.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from nrfprov.at import Urc, command
from nrfprov.at import commands as cmds
from nrfprov.at.events import RawData
from nrfprov.errors import (
    AtProtocolError,
    CommandError,
    CommandTimeout,
    CredentialError,
    CredentialVerifyError,
    DialectError,
    LockHeld,
    ModemError,
    ModemLinkError,
    NrfprovError,
    RegistrationTimeout,
)
from nrfprov.interrupts import critical
from nrfprov.modem.attestation import parse_keygen_output
from nrfprov.modem.channel import AtChannel
from nrfprov.modem.credentials import (
    CredentialInfo,
    CredentialType,
    content_sha256,
    normalise_content,
    normalise_csr_der,
    parse_cmng_list,
)
from nrfprov.modem.dialects.base import Dialect, TlsParams, ints
from nrfprov.modem.dialects.slm import SlmDialect
from nrfprov.modem.dialects.sm import SM_LINE_END, SerialModemDialect
from nrfprov.modem.handshake import handshake
from nrfprov.modem.socket import ModemSocket
from nrfprov.names import DIALECT_CHOICES

if TYPE_CHECKING:
    from nrfprov.locks import FileLock

log = logging.getLogger(__name__)

#: Functional modes in which %CMNG write/delete and %KEYGEN answer 518 [Nordic AT reference, %CMNG].
ACTIVE_MODES = frozenset({1, 2, 21})
OFFLINE_MODE = 4
#: +CEREG stat values that mean registered: 1 home, 5 roaming [sdk-nrf lib/lte_link_control].
REGISTERED = frozenset({1, 5})
REG_DENIED = 3


class Modem:
    """An nRF91 running Nordic's serial modem application (Serial Modem add-on or legacy SLM)."""

    def __init__(
        self,
        channel: AtChannel,
        *,
        dialect: str = "auto",
        slm_terminator: str = "+++",
        sm_line_end: bytes = SM_LINE_END,
        sm_auto_receive: bool = True,
    ) -> None:
        if dialect not in DIALECT_CHOICES:
            raise DialectError(f"unknown modem dialect {dialect!r}", hint="use auto, sm or slm")
        self._ch = channel
        self._dialect_name: str | None = None if dialect == "auto" else dialect
        self._dialect: Dialect | None = None
        self._slm_terminator = slm_terminator
        # Serial Modem build options: its AT command terminator (CONFIG_SM_CR_TERMINATION by default)
        # and whether sockets use #XRECVCFG auto-receive (see dialects/sm.py). Auto-receive is the
        # default: it drops the AT#XRECV round trip per received chunk, 70-74 → 50-60 UART command
        # turnarounds per provisioning run on the simulator, with every flow intact.
        self._sm_line_end = sm_line_end
        self._sm_auto_receive = sm_auto_receive
        self._reg_status: int | None = None
        self._reg_updates = 0
        # What this host last set or read of the modem, so each credential operation need not ask again
        # (one UART round trip each): the functional mode, and whether +CEREG URCs are on. Only this
        # object drives the port; a raw ``at()`` command or a modem restart (its Ready banner) makes
        # them unknown again.
        self._cfun_known: int | None = None
        self._cereg_urcs = False
        self._offline_depth = 0
        self._restore_mode: int | None = None  # the mode offline() owes back (see close())
        self._lock: FileLock | None = None
        channel.add_urc_handler(self._on_urc)

    # --- lifecycle ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        baud: int = 115200,
        dialect: str = "auto",
        slm_terminator: str = "+++",
        rtscts: bool = False,
        ready_timeout: float = 2.0,
        sm_line_end: bytes = SM_LINE_END,
        sm_auto_receive: bool = True,
    ) -> Modem:
        """Lock and open ``url``, check the modem answers ``AT``, and switch on numeric CME errors.

        The port is locked for this process first (``nrfprov.locks``): a second nrfprov on the same
        port is refused before it sends a byte (``LockHeld``, exit 2). ``rtscts``: hardware flow control
        (the nRF9160 DK has it; Thingy:91 does not) [sdk-nrf serial_lte_modem, slm_description.rst and
        board overlays]. Ptys ignore it.
        """
        from nrfprov.locks import port_lock

        lock = port_lock(url).acquire()
        try:
            port = _open_port(url, baud=baud, rtscts=rtscts)
        except BaseException:
            lock.release()
            raise
        channel = AtChannel(port, name=url)
        # Serial Modem: CONFIG_SM_DATAMODE_TERMINATOR (default "+++"); legacy SLM: the configured one.
        channel.datamode_terminators = tuple(dict.fromkeys([slm_terminator.encode("ascii"), b"+++"]))
        modem = cls(
            channel,
            dialect=dialect,
            slm_terminator=slm_terminator,
            sm_line_end=sm_line_end,
            sm_auto_receive=sm_auto_receive,
        )
        modem._lock = lock
        try:
            modem._handshake(ready_timeout)
        except BaseException:
            modem.close()
            raise
        return modem

    def _handshake(self, ready_timeout: float) -> None:
        handshake(self._ch, ready_timeout)

    def close(self) -> None:
        """Put back a functional mode :meth:`offline` changed and could not restore (an interrupt
        landed between the two), close the port, release the port lock."""
        try:
            if self._restore_mode is not None:
                mode = self._restore_mode
                try:
                    log.warning("restoring CFUN=%d before closing", mode)
                    self._restore(mode)
                except NrfprovError as exc:
                    log.warning("the modem is still offline: %s; bring it back with "
                                "nrfprov at --port PORT AT+CFUN=%d", exc, mode)
        finally:
            self._ch.close()
            lock, self._lock = self._lock, None
            if lock is not None:
                lock.release()

    def __enter__(self) -> Modem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- counters, raw commands -----------------------------------------------------------------

    @property
    def uart_bytes_sent(self) -> int:
        return self._ch.bytes_sent

    @property
    def uart_bytes_received(self) -> int:
        return self._ch.bytes_received

    def at(self, text: str, timeout: float | None = None) -> list[str]:
        """Run one AT command; return its information lines. Raises ``CommandError``."""
        self._forget_state()  # it may change the functional mode or the URC settings
        return self._ch.execute(command(text, timeout=timeout)).lines

    def _forget_state(self) -> None:
        self._cfun_known = None
        self._cereg_urcs = False
        self._reg_status = None

    # --- functional mode, registration, identity ------------------------------------------------

    def cfun(self) -> int:
        lines = self._ch.execute(cmds.cfun_read()).lines
        values = ints(lines[0]) if lines else []
        if not values:
            raise AtProtocolError(f"no +CFUN line in the reply to AT+CFUN?: {lines!r}")
        self._cfun_known = values[0]
        return values[0]

    def set_cfun(self, mode: int) -> None:
        """``AT+CFUN=<mode>``. If the answer does not come in time, the modem may still switch later
        (a CFUN=4 answered after the timeout takes effect then): the real mode is read back, waiting
        for the late answer first, and only a modem that did not reach ``mode`` is an error."""
        self._cfun_known = None  # unknown until the modem has answered
        try:
            self._ch.execute(cmds.cfun_set(mode))
        except CommandTimeout as exc:
            actual = self._cfun_after_timeout(exc)
            if actual == mode:
                log.warning("AT+CFUN=%d was answered late; the modem is now in CFUN=%d", mode, actual)
                self._mode_set(mode)
                return
            raise CommandTimeout(
                exc.command, exc.timeout,
                hint=f"the modem is in CFUN={actual}" if actual is not None else
                "the functional mode is unknown: check it with nrfprov at --port PORT AT+CFUN?",
            ) from exc
        self._mode_set(mode)

    def _mode_set(self, mode: int) -> None:
        self._cfun_known = mode
        if mode in (0, OFFLINE_MODE):  # the radio is off: not registered, whenever its +CEREG: 0 comes
            with self._ch.condition:
                self._reg_status = 0
                self._reg_updates += 1

    def _cfun_after_timeout(self, exc: CommandTimeout) -> int | None:
        """The mode after a timed-out change, once the modem has answered it (None if it never does).

        The modem answers in order, so ``AT+CFUN?`` is answered after the late change: the session
        takes the late ``OK`` as owed and the ``+CFUN:`` line is the state after the change. A modem
        still busy with the change does not answer the read either; it is asked again, up to as long
        again as the change was allowed."""
        reads = max(1, int(exc.timeout // cmds.cfun_read().timeout))
        for _ in range(reads):
            try:
                return self.cfun()
            except CommandTimeout:
                continue
        return None

    @contextlib.contextmanager
    def offline(self) -> Iterator[None]:
        """Offline (CFUN=4) for the block if the modem is active, then RESTORE the previous mode.

        %CMNG write/delete and %KEYGEN are refused with 518 while CFUN is 1, 2 or 21
        [Nordic AT reference, %CMNG, %KEYGEN]. Re-entrant: nested blocks reuse the outer one.
        """
        if self._offline_depth:
            self._offline_depth += 1
            try:
                yield
            finally:
                self._offline_depth -= 1
            return
        previous = self._cfun_known if self._cfun_known is not None else self.cfun()
        changed = previous in ACTIVE_MODES
        self._offline_depth = 1
        try:
            if changed:
                # Owed before the command is sent: an interrupt between the two must still restore.
                self._restore_mode = previous
                log.info("modem in CFUN=%d: switching to CFUN=4 for credential work", previous)
                self.set_cfun(OFFLINE_MODE)
            yield
        except BaseException:
            self._offline_depth = 0
            if changed:  # the failure (or interrupt) that got here matters more than a failed restore
                try:
                    self._restore(previous)
                except NrfprovError as exc:
                    log.warning("could not restore CFUN=%d: %s", previous, exc)
            raise
        self._offline_depth = 0
        if changed:
            self._restore(previous)

    def _restore(self, mode: int) -> None:
        # One critical section around the command and the bookkeeping: a signal held during the
        # command is raised after the debt is cleared, or close() would set this mode again later.
        with critical():
            log.info("restoring CFUN=%d", mode)
            self.set_cfun(mode)
            self._restore_mode = None

    def _on_urc(self, ev: Urc | RawData) -> None:
        if isinstance(ev, Urc) and ev.line == "Ready":  # the boot banner: the modem restarted
            self._forget_state()
        if isinstance(ev, Urc) and ev.line.startswith("+CEREG:"):
            values = ints(ev.line.split(",", 1)[0])
            if values:
                self._reg_status = values[0]
                self._reg_updates += 1

    @property
    def registration_status(self) -> int | None:
        """The last +CEREG stat seen (None before any)."""
        return self._reg_status

    def wait_registered(self, timeout: float) -> int:
        """Wait for +CEREG stat 1 (home) or 5 (roaming); return it. Enables ``AT+CEREG=5`` URCs (once per
        modem start: the setting lasts until the modem restarts [3GPP TS 27.007 §10.1.22])."""
        tracked = self._cereg_urcs and self._reg_status is not None
        if not self._cereg_urcs:
            self._ch.execute(cmds.cereg_set(5))
            self._cereg_urcs = True
        if not tracked:  # else every change since the URCs were switched on has been reported
            with self._ch.condition:
                updates = self._reg_updates
            stat = _cereg_read_stat(self._ch.execute(cmds.cereg_read()).lines)
            with self._ch.condition:
                # A URC seen since the read was sent is newer than its answer: keep it.
                if stat is not None and self._reg_updates == updates:
                    self._reg_status = stat
        self._ch.wait_for(
            lambda: self._reg_status in REGISTERED or self._reg_status == REG_DENIED, timeout
        )
        status = self._reg_status
        if status == REG_DENIED:
            raise ModemError(
                "LTE registration denied (+CEREG stat 3)",
                hint="check the SIM's subscription and %XSYSTEMMODE (LTE-M / NB-IoT)",
            )
        if status not in REGISTERED:
            raise RegistrationTimeout(timeout, status)
        assert status is not None
        return status

    def imei(self) -> str:
        lines = self._ch.execute(cmds.cgsn()).lines
        imei = lines[0].strip() if lines else ""
        if not (len(imei) == 15 and imei.isdigit()):
            raise AtProtocolError(f"AT+CGSN answered {lines!r}, not a 15-digit IMEI")
        return imei

    def firmware(self) -> str:
        lines = self._ch.execute(cmds.cgmr()).lines
        if not lines:
            raise AtProtocolError("AT+CGMR answered no version line")
        return lines[0].strip()

    # --- credentials ----------------------------------------------------------------------------

    def credentials(self, sec_tag: int | None = None) -> list[CredentialInfo]:
        """``%CMNG`` list (optionally one sec tag): (sec_tag, type, SHA-256) per stored credential."""
        return parse_cmng_list(self._ch.execute(cmds.cmng_list(sec_tag)).lines)

    def write_credential(self, sec_tag: int, type: CredentialType | int, pem: str) -> str:
        """Store ``pem`` and verify it via the SHA-256 that ``%CMNG`` list reports; return the hash.

        Goes offline for the write when needed and restores the previous functional mode.
        """
        ctype = CredentialType(int(type))
        content = normalise_content(int(ctype), pem)
        expected = content_sha256(content)
        cmd = cmds.cmng_write(sec_tag, int(ctype), content)  # size/quoting checked before sending
        with self.offline():
            try:
                try:
                    self._ch.execute(cmd)
                except CommandError as exc:
                    if exc.code != 519:  # firmware that refuses to overwrite: delete, then write
                        raise
                    self._ch.execute(cmds.cmng_delete(sec_tag, int(ctype)))
                    self._ch.execute(cmd)
            except CommandError as exc:
                raise CredentialError(
                    f"writing sec tag {sec_tag} type {int(ctype)} ({ctype.name}) failed: {exc}",
                    hint=_WRITE_HINTS.get(exc.code or -1),
                ) from exc
        entries = [c for c in self.credentials(sec_tag) if int(c.type) == int(ctype)]
        if not entries:
            raise CredentialVerifyError(sec_tag, int(ctype), expected, None)
        actual = entries[0].sha256
        if actual is None:
            log.warning("modem firmware reports no SHA-256 (mfw < 1.3.2): write not verified")
            return expected
        if actual != expected:
            raise CredentialVerifyError(sec_tag, int(ctype), expected, actual)
        return expected

    def delete_credential(self, sec_tag: int, type: CredentialType | int, missing_ok: bool = True) -> bool:
        """Delete one credential; True if it existed. A missing one is fine unless ``missing_ok`` is False."""
        with self.offline():
            try:
                self._ch.execute(cmds.cmng_delete(sec_tag, int(type)))
            except CommandError as exc:
                if exc.code == 513 and missing_ok:
                    return False
                raise
        return True

    def keygen_csr(self, sec_tag: int, attributes: str | None = None) -> bytes:
        """``%KEYGEN``: the modem makes an EC P-256 key in ``sec_tag`` (type 2) and returns a CSR
        (DER), with the mfw 1.3.7/2.0.2 spurious-NULL quirk removed."""
        with self.offline():
            try:
                lines = self._ch.execute(cmds.keygen(sec_tag, attributes=attributes)).lines
            except CommandError as exc:
                if exc.code == 0:
                    raise CommandError(exc.command, exc.kind, exc.code,
                                       hint="%KEYGEN needs modem firmware ≥ 1.3.0") from exc
                raise
        if not lines:
            raise AtProtocolError("%KEYGEN answered OK without a %KEYGEN line")
        # The COSE digest must cover exactly the DER received (AttestationError otherwise); the quirk
        # is removed only afterwards, since the modem hashed the DER as it sent it.
        out = parse_keygen_output(lines[0], sec_tag=sec_tag)
        if not out.is_csr:
            raise AtProtocolError("%KEYGEN answered with a public key where a CSR was asked for")
        return normalise_csr_der(out.der)

    # --- dialect and sockets --------------------------------------------------------------------

    @property
    def dialect(self) -> str:
        """``"sm"`` (Serial Modem add-on) or ``"slm"`` (legacy SLM); probed on first use."""
        if self._dialect_name is None:
            self._dialect_name = self._probe_dialect()
        return self._dialect_name

    def _probe_dialect(self) -> str:
        for name, text in (("sm", "AT#XSMVER"), ("slm", "AT#XSLMVER")):
            try:
                self._ch.execute(command(text))
                return name
            except CommandError:
                continue
        raise DialectError(
            "the modem answers neither AT#XSMVER (Serial Modem) nor AT#XSLMVER (legacy SLM)",
            hint="sockets need Nordic's serial modem application; credential commands still work",
        )

    def _socket_dialect(self) -> Dialect:
        if self._dialect is None:
            if self.dialect == "sm":
                self._dialect = SerialModemDialect(
                    self._ch, line_end=self._sm_line_end, auto_receive=self._sm_auto_receive
                )
            else:
                self._dialect = SlmDialect(self._ch, terminator=self._slm_terminator)
        return self._dialect

    def check_raw_binary_safe(self) -> None:
        """Raise DialectError if raw binary (host-side TLS ciphertext) cannot cross this modem's
        data mode safely: legacy SLM with a short terminator such as ``+++``."""
        self._socket_dialect().check_raw_binary_safe()

    def resolve(self, host: str, *, max_age: float) -> str:
        """The IPv4 address of ``host``, reused if looked up less than ``max_age`` s ago (``AT#XGETADDRINFO``)."""
        return self._socket_dialect().resolve(host, max_age=max_age)

    def forget_address(self, host: str) -> None:
        self._socket_dialect().forget_address(host)

    def open_tcp(self, host: str, port: int, timeout: float = 30.0) -> ModemSocket:
        handle = self._socket_dialect().open(host, port, tls=None, timeout=timeout)
        return ModemSocket(self._socket_dialect(), handle, host=host, port=port, tls=False)

    def open_tls(
        self, host: str, port: int, sec_tag: int, hostname: str | None = None,
        peer_verify: int = 2, timeout: float = 60.0,
    ) -> ModemSocket:
        """A socket on which the modem runs TLS 1.2 with the credentials in ``sec_tag``."""
        tls = TlsParams(sec_tag, hostname or host, peer_verify)
        handle = self._socket_dialect().open(host, port, tls=tls, timeout=timeout)
        return ModemSocket(self._socket_dialect(), handle, host=host, port=port, tls=True)


_WRITE_HINTS = {
    518: "the modem is online; nrfprov switches to CFUN=4 itself, so another program changed it",
    527: "the modem rejected the content: type 0/1 need PEM certificate(s), type 2 a PEM private key, "
    "each line ending in a real line break",
    515: "the modem's credential storage is full; delete unused sec tags (nrfprov creds delete)",
}


def _cereg_read_stat(lines: list[str]) -> int | None:
    """<stat> of the read form ``+CEREG: <n>,<stat>[,"<tac>",...]`` [3GPP TS 27.007 §10.1.22]. A +CEREG
    URC that the modem sent while the read was pending also starts with ``+CEREG:`` and so arrives among
    its lines; it has ``<stat>`` first and a quoted ``"<tac>"`` (or nothing) second, so it is skipped."""
    for line in lines:
        fields = [f.strip() for f in line.split(":", 1)[-1].split(",")]
        if len(fields) >= 2 and fields[0].isdigit() and fields[1].isdigit():
            return int(fields[1])
    return None


def _open_port(url: str, *, baud: int, rtscts: bool) -> Any:
    """pyserial's port for ``url``; a device path also gets ``exclusive=True``, which ``flock``s the
    tty itself, so a second program using that flock (another user's nrfprov, pyserial tools) is
    refused too, whatever lock file it used."""
    import serial

    from nrfprov.locks import flock_holders, is_device_path

    exclusive = is_device_path(url) and os.name == "posix"  # pyserial's exclusive flock is POSIX only
    try:
        port = serial.serial_for_url(url, baudrate=baud, rtscts=rtscts, timeout=None, write_timeout=30,
                                     **({"exclusive": True} if exclusive else {}))
    except (serial.SerialException, OSError, ValueError, OverflowError) as exc:
        if exclusive and "exclusively lock" in str(exc):
            holders = flock_holders(url)
            raise LockHeld(f"serial port {url}", url, holders[0] if holders else None,
                           hint="another program holds the port exclusively") from exc
        raise ModemLinkError(
            f"cannot open serial port {url!r}: {exc}",
            hint="check the path (ls /dev/ttyACM*), permissions (dialout group) and that no "
            "other program holds the port",
        ) from exc
    try:
        _assert_dtr(port)
    except BaseException:
        port.close()
        raise
    return port


def _assert_dtr(port: Any) -> None:
    """Assert DTR (some USB CDC bridges only forward data with DTR set). Ptys have no modem lines
    and raise ENOTTY/EINVAL (pyserial 3.5 on a pty, measured on this project's loopback): ignore exactly that."""
    try:
        port.dtr = True
    except OSError as exc:
        if exc.errno not in (errno.ENOTTY, errno.EINVAL):
            raise ModemLinkError(f"cannot set DTR: {exc}") from exc
