"""The batch report: one row per device attempt, appended to ``FILE.csv`` and ``FILE.jsonl`` beside it.

A row says which modem (port, USB serial, IMEI), what it became (thing, certificate id), how
(flow, format, backend, sec tag), what it cost (seconds, UART and air bytes) and how it ended
(result, error class, exit status), with the station's host name and nrfprov's version. It never
holds key material or an ownership token: the values come from the run's summary, and a value that
looks like PEM is refused as a bug before anything is written.

Appending is safe for several threads (one lock) and several stations on one file (an exclusive
``flock`` around each append on POSIX [Linux ``flock(2)``]); each row is flushed and ``fsync``-ed,
so a crash loses at most the row being written. The JSON lines file is also what a rerun reads to
recognise certificates it proved earlier (``proven_certificates``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from nrfprov.errors import LocalProtocolError, UsageError

FIELDS = (
    "time", "station", "port", "usb_serial", "imei", "thing_name", "certificate_id", "flow", "format",
    "backend", "sec_tag", "seconds", "uart_bytes", "air_bytes", "result", "error_class", "exit_code",
    "nrfprov_version", "attempts", "error",
)
#: How a device attempt ended. ``provisioned``/``resumed``/``skipped`` are done; the rest are not.
DONE_RESULTS = ("provisioned", "resumed", "skipped")
RESULTS = (*DONE_RESULTS, "failed", "busy", "interrupted")
#: Rows read back per rerun are few hundred bytes; a line longer than this is not one of ours.
ROW_LIMIT = 64 * 1024
_SECRET_MARKERS = ("-----BEGIN", "PRIVATE KEY")


def jsonl_path(csv_path: Path) -> Path:
    """``batch.csv`` → ``batch.jsonl``."""
    return csv_path.with_suffix(".jsonl")


def check_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row in FIELDS order; a missing field is empty. A PEM-looking value is a bug: refused."""
    out = {k: row.get(k, "") for k in FIELDS}
    for k, v in out.items():
        if isinstance(v, str) and any(mark in v for mark in _SECRET_MARKERS):
            raise LocalProtocolError(f"report field {k} looks like PEM content; not written")
    return out


class Report:
    """Appends rows to ``csv_path`` and its JSON lines file. ``csv_path`` None: rows are only kept."""

    def __init__(self, csv_path: Path | None) -> None:
        self.csv_path = csv_path
        self.rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        if csv_path is not None:
            self._check_header(csv_path)

    @staticmethod
    def _check_header(path: Path) -> None:
        """An existing report must have our columns, or rows would land under the wrong headings."""
        try:
            with open(path, encoding="utf-8", newline="") as f:
                first = f.readline(ROW_LIMIT)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise UsageError(f"cannot read the report {path}: {exc.strerror}") from exc
        if first and next(csv.reader([first]), []) != list(FIELDS):
            raise UsageError(f"{path} is not an nrfprov station report (or one with other columns)",
                             hint="pass another --report FILE.csv")

    def append(self, row: Mapping[str, Any]) -> dict[str, Any]:
        clean = check_row(row)
        with self._lock:
            self.rows.append(clean)
            if self.csv_path is None:
                return clean
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerow([clean[k] for k in FIELDS])
            try:
                with _locked_append(self.csv_path) as f:
                    if f.tell() == 0:
                        f.write(",".join(FIELDS) + "\n")
                    f.write(buf.getvalue())
                with _locked_append(jsonl_path(self.csv_path)) as f:
                    f.write(json.dumps(clean, sort_keys=False) + "\n")
            except OSError as exc:
                raise UsageError(f"cannot append to the report {self.csv_path}: {exc.strerror}",
                                 hint="check the folder's permissions and free space") from exc
        return clean


@contextlib.contextmanager
def _locked_append(path: Path) -> Iterator[io.TextIOWrapper]:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    f = open(fd, "a", encoding="utf-8", newline="")  # closed below
    try:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)  # released when the file is closed
        f.seek(0, os.SEEK_END)
        yield f
        f.flush()
        os.fsync(fd)
    finally:
        f.close()


def proven_certificates(csv_path: Path | None) -> dict[str, set[str]]:
    """IMEI → the certificate ids earlier rows of this report show as provisioned and proven."""
    out: dict[str, set[str]] = {}
    if csv_path is None:
        return out
    try:
        f = open(jsonl_path(csv_path), encoding="utf-8")
    except FileNotFoundError:
        return out
    except OSError as exc:
        raise UsageError(f"cannot read the report {jsonl_path(csv_path)}: {exc.strerror}") from exc
    with f:
        while line := f.readline(ROW_LIMIT + 1):
            if len(line) > ROW_LIMIT:
                raise UsageError(f"{jsonl_path(csv_path)} has a line over {ROW_LIMIT} bytes: not a station report")
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a row cut short by a crash
            if isinstance(row, dict) and row.get("result") in DONE_RESULTS and row.get("certificate_id"):
                out.setdefault(str(row.get("imei", "")), set()).add(str(row["certificate_id"]))
    return out
