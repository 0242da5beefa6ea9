"""The whole exception tree of nrfprov.

Every failure a user can meet is one of these classes. Each class carries the fields a caller needs
to act on it (``CommandError.code``, ``CloudRejected.error_code`` ...) and an ``exit_code`` that the
CLI returns; :data:`EXIT_CODES` is the one list of codes the program can end with, and ``nrfprov
--help`` and the documentation show it.

Local and remote, as h11 tells them apart: :class:`LocalProtocolError` means *we* broke a
protocol's rules (the host program drove a sans-IO core out of order); every other class describes
what a peer sent or did (the modem, the broker, the cloud) or what the environment refused (a
port, a file, the disk). A local error is a bug to report, never something the user can fix.

Messages name the cause and, where there is one, the fix. They never contain private key material.
"""

from __future__ import annotations

#: 128 + the signal number: what a shell reports for a job a signal stopped (POSIX ``wait`` status,
#: as bash prints it). SIGHUP 1 (the terminal closed), SIGINT 2 (Ctrl-C), SIGTERM 15 (``kill``).
EXIT_HANGUP = 129
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
#: 128 + SIGPIPE (13): stdout's reader went away (``nrfprov ports | head -3``).
EXIT_BROKEN_PIPE = 141

#: Every exit status of ``nrfprov``, with its meaning (0, 1, 2 and 130 besides the error classes:
#: 2 is also argparse's status for a bad option; 130 is 128 + SIGINT, the shell's convention).
EXIT_CODES: dict[int, str] = {
    0: "ok",
    1: "internal error (a bug: a protocol core driven out of order); demo: a row not as expected",
    2: "usage or configuration (bad option, malformed fragment, refused combination)",
    3: "modem / AT (ERROR, +CME ERROR, no answer, bytes that break the AT grammar, link lost)",
    4: "network / TLS / MQTT (connect, handshake, certificate, broker, stand-in broker exited)",
    5: "the cloud rejected the request",
    6: "payload invalid (malformed, oversized or unusable credentials received)",
    7: "credential write or verify in the modem failed",
    8: "provisioning journal unreadable or unwritable (disk); issued credentials may be at risk",
    EXIT_HANGUP: "hung up (SIGHUP); handled like Ctrl-C: the modem is restored, a provisioning run stays "
    "resumable",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); an interrupted provisioning run stays resumable",
    EXIT_BROKEN_PIPE: "stdout closed by its reader (a pipe into head, say); a provisioning run or station "
    "finishes silently instead",
    EXIT_TERMINATED: "terminated (SIGTERM); handled like Ctrl-C: the modem is restored, a provisioning run "
    "stays resumable",
}


class NrfprovError(Exception):
    """Base of every error nrfprov raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived (``nrfprov.interrupts``). A ``KeyboardInterrupt``, so code that
    handles Ctrl-C handles all three; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        try:
            self.signal_name = signal.Signals(signum).name
        except ValueError:
            self.signal_name = f"signal {signum}"
        super().__init__(self.signal_name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# --- 1: local protocol error (a bug) -------------------------------------------------------------


class LocalProtocolError(NrfprovError):
    """We broke a protocol's rules: a sans-IO core was driven out of order (a second command while one
    is in flight, data after end of stream, an event the current step does not take). A bug in nrfprov
    or in the program using its API, never the peer's fault; compare :class:`AtProtocolError`."""

    exit_code = 1


# --- 2: usage / configuration -------------------------------------------------------------------


class ConfigError(NrfprovError):
    """A configuration fragment or option is malformed or inconsistent."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line_no: int | None = None,
        line: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line_no}: " if line_no else f"{path}: "
        full = f"{where}{message}"
        if line is not None:
            full += f": {line!r}"
        super().__init__(full, hint=hint)
        self.path = path
        self.line_no = line_no
        self.line = line


class UsageError(NrfprovError):
    """The command line asks for something that cannot work (e.g. a flow the backend cannot carry)."""

    exit_code = 2


class AlreadyProvisioned(UsageError):
    """``provision`` found a client certificate in the provisioned sec tag and was not told to replace it
    (``--force``). ``certificate_id`` is AWS's id of that certificate when it is known."""

    def __init__(self, message: str, *, sec_tag: int, certificate_id: str = "", thing_name: str = "",
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.sec_tag = sec_tag
        self.certificate_id = certificate_id
        self.thing_name = thing_name


class LockHeld(UsageError):
    """Another process holds the serial port or the journal folder (an exclusive ``flock``)."""

    def __init__(self, what: str, path: str, pid: int | None, *, hint: str | None = None) -> None:
        holder = f"process {pid}" if pid is not None else "another process (PID unknown)"
        super().__init__(
            f"{what} is in use by {holder}; nothing was sent",
            hint=hint or (f"wait for it to finish or stop it (kill {pid}); " if pid is not None else "")
            + "a crashed holder releases the lock by itself",
        )
        self.what = what
        self.path = path
        self.pid = pid


class InputFileError(UsageError):
    """A file given to nrfprov cannot be read: missing, not a regular file, too large, not text."""

    def __init__(self, path: str, what: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"{what} {path}: {reason}", hint=hint)
        self.path = path
        self.what = what
        self.reason = reason


class AwsSetupError(ConfigError):
    """Local setup is missing something before AWS is even asked (exit 2)."""


# --- 3: modem / AT ------------------------------------------------------------------------------


class ModemError(NrfprovError):
    """Anything between the host and the modem's AT interpreter."""

    exit_code = 3


class AtProtocolError(ModemError):
    """Remote: the modem sent bytes that break the AT grammar or exceed a receive limit, or a reply
    that does not have the documented shape. (Our own misuse is :class:`LocalProtocolError`.)"""

    def __init__(self, message: str, *, data: bytes = b"", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.data = data


class CommandError(ModemError):
    """The modem answered a command with ``ERROR``, ``+CME ERROR: n`` or ``+CMS ERROR: n``.

    ``kind`` is ``"ERROR"``, ``"CME"`` or ``"CMS"``; ``code`` is the number for CME/CMS, else None.
    """

    def __init__(
        self, command: str, kind: str, code: int | None = None, *, hint: str | None = None
    ) -> None:
        shown = _redact_command(command)
        what = "ERROR" if kind == "ERROR" else f"+{kind} ERROR: {code}"
        meaning = CME_MEANINGS.get(code) if kind == "CME" and code is not None else None
        msg = f"modem answered {what} to {shown}"
        if meaning:
            msg += f" ({meaning})"
        super().__init__(msg, hint=hint)
        self.command = shown
        self.kind = kind
        self.code = code


class AttestationError(ModemError):
    """The modem's ``%KEYGEN`` attestation (COSE) does not match the key material it came with."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message, hint="run the key generation again; if it repeats, check the serial link")
        self.expected = expected
        self.actual = actual


class CommandTimeout(ModemError):
    """No final result arrived within the command's timeout."""

    def __init__(self, command: str, timeout: float, *, hint: str | None = None) -> None:
        shown = _redact_command(command)
        super().__init__(f"no answer to {shown} within {timeout:g} s", hint=hint)
        self.command = shown
        self.timeout = timeout


class ModemLinkError(ModemError):
    """The serial link to the modem failed or closed."""


class DialectError(ModemError):
    """The modem's socket dialect is unknown, or cannot safely do what was asked."""


class RegistrationTimeout(ModemError):
    """The modem did not register on the LTE network in time."""

    def __init__(self, timeout: float, last_status: int | None) -> None:
        super().__init__(
            f"no LTE registration within {timeout:g} s (last +CEREG status: {last_status})",
            hint="check antenna, SIM and %XSYSTEMMODE, or raise the registration timeout",
        )
        self.timeout = timeout
        self.last_status = last_status


# --- 4: network / TLS ---------------------------------------------------------------------------


class TransportError(NrfprovError):
    """A byte stream (modem socket, TLS session, TCP connection, MQTT link) failed."""

    exit_code = 4


class ConnectError(TransportError):
    """The connection could not be opened (DNS, refused, unreachable, modem socket error)."""

    def __init__(self, host: str, port: int, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"cannot connect to {host}:{port}: {reason}", hint=hint)
        self.host = host
        self.port = port
        self.reason = reason


class LinkClosed(TransportError):
    """The peer or an intermediate hop closed the stream before the operation completed."""


class TlsError(TransportError):
    """The TLS session failed. ``err`` is the mbedTLS error code (positive), when known."""

    def __init__(self, message: str, *, err: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.err = err


class CertificateVerifyError(TlsError):
    """The server's certificate or host name did not verify, or the server refused ours."""


class ModemTlsLimitError(TransportError):
    """An incoming TLS record exceeded the modem's ~2 KB secure-socket buffer (EMSGSIZE)."""

    def __init__(self, message: str, *, record_size: int | None = None, limit: int = 2048) -> None:
        super().__init__(
            message,
            hint="use the native TLS backend (CONFIG_NRFPROV_TLS_BACKEND=\"native\" or "
            "overlay-native_tls.conf) or the split-topic flow (CONFIG_NRFPROV_FLOW=\"split\")",
        )
        self.record_size = record_size
        self.limit = limit


class ModemTlsHandshakeError(ConnectError):
    """The modem's own TLS handshake failed inside ``AT#XCONNECT`` (SO_ERROR EOPNOTSUPP).

    The modem reports every handshake failure the same way, so the message lists the causes a host can
    act on, the modem's 4 KB limit on the server certificate chain first."""

    #: "Maximum server certificate chain size has a limit of 4kB" (nRF91 modem release notes).
    SERVER_CHAIN_LIMIT = 4096

    def __init__(self, host: str, port: int, sec_tag: int, hostname: str) -> None:
        super().__init__(
            host,
            port,
            "the modem's TLS handshake failed (SO_ERROR EOPNOTSUPP). The modem accepts a server "
            f"certificate chain of at most 4 KB ({self.SERVER_CHAIN_LIMIT} bytes of DER): a longer "
            "chain (e.g. an RSA leaf with intermediates) fails exactly like this; otherwise sec tag "
            f"{sec_tag} lacks the server's CA (type 0), '{hostname}' does not match the server "
            "certificate, or the server refused the client certificate (an expired or revoked claim "
            "certificate, or a policy refusing the connection)",
            hint="use the native TLS backend (CONFIG_NRFPROV_TLS_BACKEND=\"native\"), which has no chain "
            "limit, or a server that sends a shorter (ECC) chain; check the CA in the sec tag",
        )
        self.sec_tag = sec_tag
        self.hostname = hostname
        self.chain_limit = self.SERVER_CHAIN_LIMIT


class DeviceLimitError(TransportError):
    """Device-mirror mode: a message would not fit a buffer the firmware fragments configure."""

    def __init__(self, symbol: str, limit: int, needed: int) -> None:
        super().__init__(
            f"message needs {needed} bytes but {symbol}={limit}: the device would fail "
            f"(short by {needed - limit} bytes)",
            hint=f"raise {symbol} to at least {needed} in your overlay",
        )
        self.symbol = symbol
        self.limit = limit
        self.needed = needed


class MqttError(TransportError):
    """The MQTT session failed: CONNACK refused, SUBACK failure, PUBACK with an error reason."""

    def __init__(self, message: str, *, reason_code: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason_code = reason_code


class ConnectThrottled(MqttError):
    """The broker hung up on an MQTT CONNECT (no CONNACK) or answered 0x9F "connection rate exceeded".

    AWS IoT Core allows one CONNECT per second per client ID and hangs up on a faster one; it treats a
    CONNECT its policy refuses (``iot:Connect``) the same way, so the message names both.
    """

    def __init__(self, client_id: str, *, reason_code: int | None = None) -> None:
        super().__init__(
            f"the broker refused the MQTT CONNECT of client ID {client_id!r} "
            + ("(CONNACK 0x9F, connection rate exceeded)" if reason_code is not None else "without a CONNACK"),
            reason_code=reason_code,
            hint="AWS IoT allows one CONNECT per second per client ID: another device or process may be "
            "using this client ID; otherwise the policy may not allow iot:Connect for it",
        )
        self.client_id = client_id


class ResponseTimeout(TransportError):
    """No reply arrived on the expected topic(s) in time."""

    def __init__(self, what: str, timeout: float, *, hint: str | None = None) -> None:
        super().__init__(f"no {what} within {timeout:g} s", hint=hint)
        self.what = what
        self.timeout = timeout


class AwsUnreachable(TransportError):
    """The AWS endpoint did not answer (exit 4)."""


# --- 5: cloud rejected --------------------------------------------------------------------------


class CloudRejected(NrfprovError):
    """AWS IoT (or the stand-in) answered on a ``.../rejected`` topic."""

    exit_code = 5

    def __init__(self, topic: str, status_code: int | None, error_code: str, error_message: str) -> None:
        super().__init__(f"cloud rejected the request on {topic}: {status_code} {error_code}: {error_message}")
        self.topic = topic
        self.status_code = status_code
        self.error_code = error_code
        self.error_message = error_message


class ThingNameUnknown(NrfprovError):
    """A resumed run proved that its certificate was registered (AWS accepts the identity, or its
    ownership token was already used) but none of the thing names it could derive is the one
    RegisterThing created, so the proof cannot be made."""

    exit_code = 5

    def __init__(self, certificate_id: str, tried: tuple[str, ...], *, hint: str | None = None) -> None:
        tried_text = ", ".join(tried) or "none"
        super().__init__(
            f"certificate {certificate_id} was registered before the interruption, but under a thing name "
            f"nrfprov cannot derive (tried: {tried_text})",
            hint=hint,
        )
        self.certificate_id = certificate_id
        self.tried = tried


class AwsError(NrfprovError):
    """AWS refused or could not do what the command needs (exit 5). ``code`` is AWS's error code."""

    exit_code = 5

    def __init__(self, message: str, *, code: str = "", operation: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.operation = operation


class StackStateError(AwsError):
    """The stack is in a state this command cannot work from (failed, or busy)."""

    def __init__(self, stack: str, status: str, reason: str, *, hint: str) -> None:
        super().__init__(f"stack {stack} is {status}" + (f": {reason}" if reason else ""), hint=hint)
        self.stack = stack
        self.status = status
        self.reason = reason


class ConflictError(AwsError):
    """A resource the stack would create already exists outside it."""


# --- 6: payload invalid -------------------------------------------------------------------------


class PayloadError(NrfprovError):
    """A received payload is malformed, truncated, oversized or lacks a field.

    ``offset`` is the byte offset where parsing failed, when known.
    """

    exit_code = 6

    def __init__(self, message: str, *, offset: int | None = None, hint: str | None = None) -> None:
        if offset is not None:
            message = f"{message} (at byte {offset})"
        super().__init__(message, hint=hint)
        self.offset = offset


class MalformedPayload(PayloadError):
    """The native extractor refused a reply. ``reason`` is its status name (``"NRFPROV_E_SYNTAX"``,
    ``"NRFPROV_E_DUPLICATE"`` ...), ``field`` the credential field involved, if any."""

    def __init__(
        self, message: str, *, reason: str, offset: int | None, field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, offset=offset, hint=hint)
        self.reason = reason
        self.field = field


class PayloadTooLarge(PayloadError):
    """A payload or field exceeds a documented limit (AWS 128 KB, modem 4096-byte command ...)."""

    def __init__(self, what: str, size: int, limit: int, *, hint: str | None = None) -> None:
        super().__init__(f"{what} is {size} bytes, over the {limit}-byte limit", hint=hint)
        self.what = what
        self.size = size
        self.limit = limit


class CredentialBundleError(PayloadError):
    """Received credentials are unusable: PEM does not parse, key does not match cert, expired ..."""


class ReplyConflict(PayloadError):
    """A second, different ``accepted`` reply arrived for one request. The cloud answers a request once
    and only to the connection that sent it, so one of the two replies is not this device's, and which
    one cannot be told: neither may be used. ``certificate_ids`` names both, for revocation."""

    def __init__(self, message: str, *, certificate_ids: tuple[str, ...], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.certificate_ids = certificate_ids


# --- 7: credential write / verify ---------------------------------------------------------------


class CredentialError(NrfprovError):
    """Writing or verifying a credential in the modem failed."""

    exit_code = 7


class CredentialVerifyError(CredentialError):
    """``%CMNG`` list shows a different SHA-256 (or no entry) after a write."""

    def __init__(self, sec_tag: int, cred_type: int, expected: str, actual: str | None) -> None:
        super().__init__(
            f"sec tag {sec_tag} type {cred_type}: modem reports SHA-256 {actual or 'none'}, "
            f"wrote {expected}"
        )
        self.sec_tag = sec_tag
        self.cred_type = cred_type
        self.expected = expected
        self.actual = actual


# --- 8: the provisioning journal (disk) ---------------------------------------------------------


class JournalError(NrfprovError):
    """The provisioning journal cannot be read or written (a disk or file-system failure, or a damaged
    file); issued credentials may be at risk. Not a modem failure, so not exit 7."""

    exit_code = 8


# --- helpers ------------------------------------------------------------------------------------

#: +CME ERROR numbers from the nRF91 AT command reference (security chapter) and nrfcredstore.
CME_MEANINGS: dict[int, str] = {
    0: "command not supported by this modem firmware",
    513: "not found",
    514: "no access",
    515: "memory full",
    518: "not allowed in active state: set AT+CFUN=4 first",
    519: "already exists",
    523: "key generation failed",
    527: "invalid certificate content",
    528: "not allowed while a power-off warning is active",
}

_PRIVATE_MARKERS = ("PRIVATE KEY",)


def _redact_command(command: str) -> str:
    """Shorten a command for messages and hide PEM content, so no key material reaches a log."""
    if any(marker in command for marker in _PRIVATE_MARKERS) or "-----BEGIN" in command:
        head = command.split('"', 1)[0]
        return f'{head}"<PEM redacted>"'
    if len(command) > 120:
        return command[:117] + "..."
    return command
