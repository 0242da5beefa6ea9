"""The station's live view on a terminal (rich): one row per device and the batch's summary line.

The view reads the station's device list at each refresh (rich's own refresh thread, 4 times a
second) instead of being pushed every step: 100 devices x 12 steps would otherwise redraw the
screen a thousand times for nothing. Rows that do not fit the terminal are cut, running devices
first, then failed ones, then done ones: the operator's eye goes to what moves and what failed.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console, Group, JustifyMethod
from rich.live import Live
from rich.table import Table
from rich.text import Text

#: Result -> colour of the result cell.
_COLOURS = {"provisioned": "green", "resumed": "green", "skipped": "cyan", "failed": "red", "busy": "yellow",
            "interrupted": "yellow"}
_ORDER = {"": 0, "failed": 1, "busy": 1, "interrupted": 1}
#: Lines kept for the title, the header and the summary when the table is cut to the terminal.
_CHROME = 7


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


#: The device table's columns and their alignment.
_COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("port", "left"), ("IMEI", "left"), ("step", "right"), ("phase", "left"), ("elapsed", "right"),
    ("UART bytes", "right"), ("result", "left"))

class LiveView:
    """``with LiveView(station): station.run()`` — the view follows the station until the block ends."""

    def __init__(self, station: Any, console: Console | None = None) -> None:
        self.station = station
        self.console = console or Console()
        self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveView:
        self._live.__enter__()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._live.__exit__(et, ev, tb)

    def __rich__(self) -> Group:
        now = self.station.now()
        devices = self.station.devices()
        summary = self.station.summary()
        running = sum(1 for d in devices if d.started is not None and not d.result)
        table = Table(expand=False, pad_edge=False, box=None, header_style="bold")
        for col, justify in _COLUMNS:
            table.add_column(col, justify=justify)
        room = max(3, self.console.size.height - _CHROME)
        shown = sorted(devices, key=lambda d: _ORDER.get(d.result, 2))[:room]
        for d in shown:
            elapsed = ((d.ended or now) - d.started) if d.started is not None else 0.0
            step = f"{d.step_index}/{d.step_total}" if d.step_total else "-"
            result = Text(d.result or ("running" if d.started is not None else "queued"),
                          style=_COLOURS.get(d.result, "dim"))
            if d.error_class:
                result.append(f" {d.error_class}", style="red")
            table.add_row(d.port, d.imei or "-", step, d.phase if not d.result else "", _duration(elapsed),
                          f"{d.uart_bytes():,}", result)
        finished = summary.done + summary.failed + summary.busy + summary.interrupted
        left = len(devices) - finished
        rate = summary.devices_per_min
        eta = _duration(left / rate * 60.0) if rate > 0 and left else "-"
        line = Text.assemble(
            ("done ", "bold"), (f"{summary.done}", "green"), ("  failed ", "bold"), (f"{summary.failed}", "red"),
            ("  running ", "bold"), f"{running}", ("  queued ", "bold"), f"{left - running}",
            ("  devices/min ", "bold"), f"{rate:.1f}", ("  ETA ", "bold"), eta,
            ("  elapsed ", "bold"), _duration(summary.seconds))
        if len(devices) > len(shown):
            line.append(f"  ({len(devices) - len(shown)} rows not shown)", style="dim")
        if self.station.stopping:
            line.append("  stopping: finishing or journaling the devices in flight", style="yellow")
        return Group(table, line)
