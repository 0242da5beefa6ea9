"""Sans-IO AT core for nRF91 serial modems: buffer, readers, session, command builders, events.

Imports no serial/socket/threading/time (checked by tests/unit/test_house_rules.py).
"""

from nrfprov.at.commands import Command, LengthData, TerminatedData, command, quote
from nrfprov.at.events import (
    CmeError,
    CmsError,
    DataModeExited,
    EndOfStream,
    Error,
    Event,
    FinalResult,
    InfoLine,
    Ok,
    RawData,
    Timeout,
    Urc,
)
from nrfprov.at.session import AtSession, State, terminator_safe

__all__ = [
    "AtSession",
    "CmeError",
    "CmsError",
    "Command",
    "DataModeExited",
    "EndOfStream",
    "Error",
    "Event",
    "FinalResult",
    "InfoLine",
    "LengthData",
    "Ok",
    "RawData",
    "State",
    "TerminatedData",
    "Timeout",
    "Urc",
    "command",
    "quote",
    "terminator_safe",
]
