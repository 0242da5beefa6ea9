"""Many simulated modems in one process (``nrfprov sim --count N``): per-modem state, pty link, IMEI.

Each modem is a full :class:`SimulatedModem` with its own pty, credential store, identity and worker.
A modem costs three threads (UART reader, UART writer, worker) that block in select / queue waits
when idle, so an idle fleet uses no CPU; the network scheduler thread is shared by all.
"""

from __future__ import annotations

from pathlib import Path

from nrfprov.sim.store import luhn_digit, luhn_valid

PLACEHOLDER = "{n}"
MAX_COUNT = 1000  # our bound: ptys are a system resource (kernel.pty.max defaults to 4096 on Linux)


def numbered(path: Path | None, n: int, count: int) -> Path | None:
    """``/tmp/nrf91-{n}`` → ``/tmp/nrf91-7``; without ``{n}`` a fleet appends ``-<n>``; one modem keeps it."""
    if path is None:
        return None
    text = str(path)
    if PLACEHOLDER in text:
        return Path(text.replace(PLACEHOLDER, str(n)))
    return path if count == 1 else Path(f"{text}-{n}")


def state_dir(base: Path, n: int, count: int) -> Path:
    """A single modem keeps ``base``; a fleet gets ``base/modem-000`` … (zero-padded, sorted)."""
    if count == 1:
        return base
    width = max(3, len(str(count - 1)))
    return base / f"modem-{n:0{width}d}"


def imei(first: str | None, n: int) -> str | None:
    """The n-th IMEI after ``first``: consecutive serial numbers, each with its own Luhn digit."""
    if first is None:
        return None
    if not (len(first) == 15 and luhn_valid(first)):
        raise ValueError(f"IMEI {first!r} is not 15 Luhn-valid digits")
    body = int(first[:14]) + n
    if body >= 10**14:
        raise ValueError(f"IMEI {first} + {n} overflows 14 digits")
    digits = f"{body:014d}"
    return digits + luhn_digit(digits)
