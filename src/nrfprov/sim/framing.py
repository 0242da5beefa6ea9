"""The simulator's own byte framing and AT parameter parsing (independent of nrfprov.at).

Framing follows the legacy SLM host (sdk-nrf ``applications/serial_lte_modem/src/slm_at_host.c``,
``cmd_rx_handler``/``cmd_send``/``raw_rx_handler``), plus our own choices where Nordic's docs are silent
(mirrored by the client):

* a command ends at its terminator outside double quotes (quotes protect the line breaks of a PEM),
  as the Kconfig choice of the firmware says: Serial Modem defaults to CR (``CONFIG_SM_CR_TERMINATION``;
  changed from CR LF, ncs-serial-modem ``migration_notes_ncs_slm_v3.1.x.rst``), legacy SLM to CR LF
  (``CONFIG_SLM_CR_LF_TERMINATION``). Like ``cmd_rx_handler`` in ncs-serial-modem ``sm_at_host.c``, a
  byte that is not the terminator is part of the command, and nothing is buffered before the ``A`` of
  a command: so a host that sends CR LF to a CR-terminated modem has its LF skipped in command mode,
  but when the command entered data mode (``AT#XSEND=<h>,2,<flags>,<len>``) that LF is the first data
  byte. ``termination="any"`` (CR or LF, a LF after CR swallowed) is the lenient mode of old;
* BS (0x08) / DEL (0x7F) edit the line; empty lines are ignored;
* a line longer than the 4096-byte command buffer is discarded whole and answered ``ERROR``;
* in data mode bytes are counted (Serial Modem ``AT#XSEND=<h>,2,<flags>,<len>``) or scanned for the
  terminator anywhere in the stream, across chunks, with no escaping (legacy SLM ``+++``).

Only the simulator's worker thread touches a Framer.
"""

from __future__ import annotations

from dataclasses import dataclass

# AT command buffer: SLM_AT_MAX_CMD_LEN / NRF_MODEM_AT_MAX_CMD_SIZE = 4096 bytes
# [sdk-nrf slm_defines.h; sdk-nrfxlib nrf_modem_limits.h].
MAX_COMMAND = 4096

CR, LF, BS, DEL, QUOTE = 0x0D, 0x0A, 0x08, 0x7F, 0x22
TERMINATIONS = ("cr", "lf", "crlf", "any")


@dataclass(frozen=True)
class Line:
    """A complete command line (terminator removed). ``overflow`` = longer than MAX_COMMAND."""

    text: bytes
    overflow: bool = False


@dataclass(frozen=True)
class Data:
    """Raw bytes received in data mode, to hand to the socket."""

    payload: bytes


@dataclass(frozen=True)
class DataEnd:
    """Data mode finished: the counted length was reached or the terminator was seen."""


Item = Line | Data | DataEnd


class Framer:
    """Splits the host→modem byte stream into command lines or data-mode chunks."""

    def __init__(self, termination: str = "any") -> None:
        if termination not in TERMINATIONS:
            raise ValueError(f"termination must be one of {TERMINATIONS}, not {termination!r}")
        self.termination = termination
        self._prev = 0  # the last byte of the line, stored or not (an overlong line keeps counting)
        self._pending = bytearray()
        self._line = bytearray()
        self._line_len = 0  # counts dropped bytes too, like SLM's at_cmd_len
        self._in_quotes = False
        self._skip_lf = False
        self._count: int | None = None  # bytes left in counted data mode
        self._term: bytes | None = None  # terminator in scanned data mode
        self._held = bytearray()  # possible partial terminator at the end of what we saw
        self._end_due = False

    # --- input ---------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        self._pending += data

    @property
    def in_data_mode(self) -> bool:
        return self._count is not None or self._term is not None or self._end_due

    def start_counted(self, n: int) -> None:
        self._count = n
        if n == 0:
            self._count = None
            self._end_due = True

    def start_terminated(self, terminator: bytes) -> None:
        self._term = terminator
        self._held.clear()

    def flush_partial(self) -> Data | None:
        """SLM inactivity timer: a partial terminator still held is sent as data (raw_send_scheduled)."""
        if not self._held:
            return None
        out = Data(bytes(self._held))
        self._held.clear()
        return out

    # --- output --------------------------------------------------------------------------------

    def next_item(self) -> Item | None:
        if self._end_due:
            self._end_due = False
            return DataEnd()
        if self._skip_lf and self._pending:
            if self._pending[0] == LF:
                del self._pending[0]
            self._skip_lf = False
        if self._count is not None:
            return self._next_counted()
        if self._term is not None:
            return self._next_terminated()
        return self._next_line()

    def _next_counted(self) -> Item | None:
        assert self._count is not None
        if not self._pending:
            return None
        take = bytes(self._pending[: self._count])
        del self._pending[: len(take)]
        self._count -= len(take)
        if self._count == 0:
            self._count = None
            self._end_due = True
        return Data(take)

    def _next_terminated(self) -> Item | None:
        term = self._term
        assert term is not None
        if not self._pending:
            return None
        buf = bytes(self._held) + bytes(self._pending)
        self._pending.clear()
        self._held.clear()
        at = buf.find(term)
        if at >= 0:
            self._pending[:0] = buf[at + len(term) :]
            self._term = None
            self._end_due = True
            return Data(buf[:at])
        # Hold the longest tail that could still become the terminator.
        keep = 0
        for k in range(min(len(term) - 1, len(buf)), 0, -1):
            if buf.endswith(term[:k]):
                keep = k
                break
        self._held += buf[len(buf) - keep :]
        return Data(buf[: len(buf) - keep])

    def _next_line(self) -> Item | None:
        for i, byte in enumerate(self._pending):
            if byte in (BS, DEL):
                if self._line_len > 0:
                    if self._line_len <= MAX_COMMAND:
                        removed = self._line.pop()
                        if removed == QUOTE:
                            self._in_quotes = not self._in_quotes
                    self._line_len -= 1
                continue
            if self._line_len == 0 and self.termination != "any" and byte not in b"Aa":
                continue  # nothing is buffered before the A of a command (sm_at_host.c cmd_rx_handler)
            ends = not self._in_quotes and self._ends_line(byte)
            if ends:
                if self.termination == "crlf":  # the CR before the LF is not part of the command
                    self._line_len -= 1
                    if len(self._line) > self._line_len:
                        self._line.pop()
                if self._line_len <= 0:
                    self._line_len = 0
                    self._line.clear()
                    continue  # empty line / the LF of a CR LF pair
                line = Line(bytes(self._line), overflow=self._line_len > MAX_COMMAND)
                del self._pending[: i + 1]
                self._skip_lf = byte == CR and self.termination == "any"
                self._line.clear()
                self._line_len = 0
                self._in_quotes = False
                return line
            if self._line_len < MAX_COMMAND:
                self._line.append(byte)
            self._line_len += 1
            self._prev = byte
            if byte == QUOTE:
                self._in_quotes = not self._in_quotes
        self._pending.clear()
        return None

    def _ends_line(self, byte: int) -> bool:
        if self.termination == "any":
            return byte in (CR, LF)
        if self.termination == "cr":
            return byte == CR
        if self.termination == "lf":
            return byte == LF
        return byte == LF and self._line_len > 0 and self._prev == CR  # crlf


# --- command parsing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """``AT<sep><name>`` plus its form: exec (``AT+X``), set (``=...``), read (``?``), test (``=?``)."""

    text: str  # from the first "AT", as received
    name: str  # upper case, e.g. "+CFUN", "%CMNG", "#XSEND", or "" for bare AT
    form: str  # "exec" | "set" | "read" | "test"
    params: tuple[str | None, ...]  # quoted params unquoted; empty → None


class GrammarError(ValueError):
    """The line is not an AT command SLM's cmd_grammar_check would accept."""


def parse_command(line: bytes) -> Command:
    """Apply SLM's ``cmd_send`` rules: skip noise before the first ``AT`` then check the grammar."""
    at = line.upper().find(b"AT")  # bytes.upper() touches ASCII only, so offsets stay put
    if at < 0:
        raise GrammarError("no AT")
    text = line[at:].decode("latin-1")
    rest = text[2:]
    if rest == "":
        return Command(text, "", "exec", ())
    if rest[0] not in "+%#":
        raise GrammarError("bad separator")
    i = 1
    while i < len(rest) and rest[i].isascii() and rest[i].isalnum():
        i += 1
    if i == 1:
        raise GrammarError("empty name")
    name = rest[:i].upper()
    tail = rest[i:]
    if tail == "":
        return Command(text, name, "exec", ())
    if tail == "?":
        return Command(text, name, "read", ())
    if tail == "=?":
        return Command(text, name, "test", ())
    if tail[0] != "=":
        raise GrammarError("junk after name")
    return Command(text, name, "set", split_params(tail[1:]))


def split_params(s: str) -> tuple[str | None, ...]:
    """Split on commas outside quotes; a quoted parameter loses its quotes, an empty one is None."""
    out: list[str | None] = []
    cur: list[str] = []
    quoted = False
    in_q = False
    for ch in s:
        if ch == '"':
            in_q = not in_q
            quoted = True
            continue
        if ch == "," and not in_q:
            tok = "".join(cur)
            out.append(tok if quoted else (tok.strip() or None))
            cur, quoted = [], False
            continue
        cur.append(ch)
    if in_q:
        raise GrammarError("unterminated quote")
    tok = "".join(cur)
    out.append(tok if quoted else (tok.strip() or None))
    return tuple(out)
