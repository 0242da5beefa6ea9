"""Reply helpers shared by the simulator's command modules (no state, no imports of our own)."""

from __future__ import annotations


class AtFail(Exception):
    """A command fails: ``cme`` set → ``+CME ERROR: n`` (with CMEE=1), None → plain ``ERROR``."""

    def __init__(self, cme: int | None = None, reason: str = "") -> None:
        super().__init__(reason or (f"CME {cme}" if cme is not None else "ERROR"))
        self.cme = cme


class DataSink:
    """Where data-mode bytes go; ``end`` returns the ``#XDATAMODE`` status."""

    def data(self, payload: bytes) -> None:
        raise NotImplementedError

    def idle(self) -> None:
        """The inactivity timer fired (SLM): send what is buffered."""

    def end(self) -> int:
        raise NotImplementedError


def ok(*lines: str) -> bytes:
    """``\\r\\n<line>\\r\\n`` per information line, then ``\\r\\nOK\\r\\n`` (27.007 verbose)."""
    return "".join(f"\r\n{line}\r\n" for line in lines).encode("latin-1") + b"\r\nOK\r\n"


def as_int(value: str | None, lo: int, hi: int) -> int:
    """A numeric parameter in [lo, hi], else the command fails with ERROR."""
    if value is None:
        raise AtFail(None, "missing parameter")
    try:
        n = int(value, 10)
    except ValueError as exc:
        raise AtFail(None, f"not a number: {value!r}") from exc
    if not lo <= n <= hi:
        raise AtFail(None, f"{n} out of range {lo}..{hi}")
    return n


def param(params: tuple[str | None, ...], i: int) -> str | None:
    return params[i] if i < len(params) else None
