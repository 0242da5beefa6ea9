"""The first exchange on a freshly opened port: find the modem in AT-command mode and in step.

What the port may hold when we open it, and what is done about it:

- half a command in the modem's line buffer (a host that died mid-line): an empty line flushes it, as
  Nordic's tools do before their first command (the modem skips empty lines);
- a data mode a killed host left open: the modem takes every byte as payload and answers nothing.
  If ``AT`` gets no answer, :meth:`~nrfprov.modem.channel.AtChannel.leave_data_mode` completes a
  length-delimited Serial Modem send with filler, then sends the terminator alone for an open-ended
  send or legacy SLM; both are harmless in AT-command mode. ``#XDATAMODE`` shows it worked;
- answers owed to a killed host's commands (a ``CFUN`` that was still running): the modem answers in
  order, so they come before ours. The sync probe ``AT+CMEE?`` always carries a ``+CMEE:`` line, so
  every bare final result before that line is a stale one and is dropped (``Command.requires_info``);
  after the probe the session is in step.

Only when ``AT`` stays unanswered after all of this is the port reported dead, and the hint then says
whether a data mode was found.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nrfprov.at import command
from nrfprov.at import commands as cmds
from nrfprov.errors import CommandError, CommandTimeout, ModemLinkError
from nrfprov.modem.channel import AtChannel

log = logging.getLogger(__name__)

ATTEMPTS = 3


@dataclass(frozen=True)
class HandshakeReport:
    """What the handshake found: whether it had to take the modem out of a data mode."""

    left_data_mode: bool
    attempts: int


def handshake(ch: AtChannel, ready_timeout: float) -> HandshakeReport:
    """``AT`` answered, numeric CME errors on (``AT+CMEE=1``), stale answers drained; else ModemLinkError."""
    ch.write_raw(b"\r\n")
    left_data_mode = False
    tried_data_mode = False
    last: Exception | None = None
    attempts = 0
    while attempts < ATTEMPTS:
        attempts += 1
        try:
            ch.execute(command("AT", timeout=ready_timeout))
            break
        except (CommandTimeout, CommandError) as exc:
            last = exc
        if not tried_data_mode:
            tried_data_mode = True
            left_data_mode = ch.leave_data_mode()
            if left_data_mode:
                log.warning("the modem was in data mode (a program was stopped in the middle of a send); "
                            "it is back in AT-command mode")
    else:  # no break: AT was never answered
        if left_data_mode:
            hint = ("the modem was in data mode and left it (#XDATAMODE) but then did not answer AT; "
                    "reset the modem")
        else:
            terminators = ", ".join(repr(t.decode("latin-1")) for t in ch.datamode_terminators)
            hint = ("check the port and baud rate, that the serial modem application runs, and hardware "
                    "flow control (--rtscts) for a DK; no data mode was found either (filler and the "
                    f"terminator {terminators} changed nothing): if the firmware uses another "
                    "CONFIG_SLM_DATAMODE_TERMINATOR, set CONFIG_NRFPROV_SLM_TERMINATOR to it")
        raise ModemLinkError("the modem does not answer AT", hint=hint) from last
    ch.execute(cmds.cmee(1))
    ch.execute(cmds.cmee_read())  # the sync probe: see the module docstring
    return HandshakeReport(left_data_mode, attempts)
