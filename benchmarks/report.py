"""Turn one pytest-benchmark JSON export into summary.json, RESULTS.md and a PNG plot.

Run by ``make bench`` after ``pytest benchmarks --benchmark-only --benchmark-json=RAW``:

    python benchmarks/report.py RAW [--out benchmarks/results] [--results-md benchmarks/RESULTS.md]

Every ratio is computed from figures measured side by side in the same run; nothing here is an
absolute-time threshold. How each suite is recognised (see benchmarks/README.md, "Conventions"):

- ``extra_info["suite"]`` names the suite (``p1p2``, ``p2_sdk``, ``p4``, ``p3``, ``p5``); files written by
  other rooms may omit it, then the file name (``test_p3_*``, ``test_p5_*``) decides.
- P3/P5 sides: ``extra_info["impl"]`` (``bridge``/``openssl``, ``c``/``python``), else the test name or
  parameters mention ``openssl``/``paho``/``ssl`` (peer) or ``python``/``json.loads``/``cbor2`` (reference).
- Sizes: ``extra_info["size"]`` or a ``size``/``payload_size``/``nbytes`` parameter (bytes).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p6report import summarize as p6_summarize
from p7report import summarize as p7_summarize

HERE = Path(__file__).resolve().parent
UART_BYTES_PER_S = 115200 / 10  # 8N1: 10 bits on the wire per byte -> 11,520 B/s at 115200 baud

# (label, comparison, target). p1/p2/p4 are the network issue's targets (P1 against the honest floor,
# P2 and P4 against awsiotsdk); p3/p5 are the earlier suites' goals, kept.
GOALS = {
    "p1": ("P1 wall ÷ honest floor (UART line time + the cloud's own time), native/offload rows", "<=", 1.15),
    "p2": ("P2 bytes on the air ÷ awsiotsdk's (same flow)", "<=", 0.75),
    "p3": ("P3 bridge ÷ paho+OpenSSL throughput", ">=", 0.8),
    "p4": ("P4 host-direct latency ÷ awsiotsdk's", "<=", 0.3),
    "p5": ("P5 C extractor speed-up over json/cbor2 + pick", ">=", 1.0),
}


@dataclass(frozen=True)
class Bench:
    """The parts of one pytest-benchmark record the report uses."""

    file: str
    name: str
    params: dict[str, Any]
    extra: dict[str, Any]
    median: float
    mean: float
    minimum: float
    rounds: int

    @property
    def text(self) -> str:
        return f"{self.name} {json.dumps(self.params, default=str)} {self.extra.get('impl', '')}".lower()


def load(raw_path: Path) -> tuple[dict[str, Any], list[Bench]]:
    raw = json.loads(raw_path.read_text())
    out = []
    for b in raw.get("benchmarks", []):
        st = b["stats"]
        out.append(
            Bench(
                file=b["fullname"].split("::")[0].rsplit("/", 1)[-1],
                name=b["name"],
                params=b.get("params") or {},
                extra=b.get("extra_info") or {},
                median=st["median"],
                mean=st["mean"],
                minimum=st["min"],
                rounds=st["rounds"],
            )
        )
    return raw, out


def suite_of(b: Bench) -> str:
    if "suite" in b.extra:
        return str(b.extra["suite"])
    m = re.match(r"test_(p\d)", b.file)
    return m.group(1) if m else "other"


def size_of(b: Bench) -> int | None:
    for src in (b.extra, b.params):
        for key in ("size", "payload_size", "nbytes", "size_bytes", "payload_bytes"):
            if key in src:
                try:
                    return int(src[key])
                except (TypeError, ValueError):
                    pass
    m = re.search(r"(\d+(?:\.\d+)?)\s*(k|kb|kib)\b", b.text)
    if m:
        return int(float(m.group(1)) * (1024 if m.group(2) == "kib" else 1000))
    return None


def _fmt_size(n: int) -> str:
    return f"{n / 1000:g} KB" if n % 1024 else f"{n // 1024} KiB"


# -- P1/P2/P4: provisioning runs -------------------------------------------------------------------


def _med(values: Iterable[float]) -> float:
    vals = list(values)
    return statistics.median(vals) if vals else float("nan")


def provisioning(benches: list[Bench]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """P1 by flow/backend, P2 by flow/format/backend (+ awsiotsdk), P4 ours vs awsiotsdk."""
    p1: dict[str, Any] = {}
    p1_detail: dict[str, Any] = {}
    p2: dict[str, Any] = {}
    p4: dict[str, Any] = {}
    for b in benches:
        s = suite_of(b)
        if s == "p1p2":
            flow, fmt, backend = b.extra["flow"], b.extra["format"], b.extra["backend"]
            uart = _med(b.extra["uart_bytes"])
            floor = uart / UART_BYTES_PER_S
            # The honest floor adds the time the device waited on the cloud (the stand-in's TLS, broker and
            # responder: key, signature, registry, policy), measured at the relay: none of it is ours.
            server = _med(b.extra.get("server_wait") or [0.0])
            # When the reconnect reuses the claim's client ID, AWS's one CONNECT per second also bounds the
            # run: line time to the claim's CONNECT + 1 s + line time from the reconnect's CONNECT.
            quotas = [q for q in b.extra.get("quota_floor") or [] if q is not None]
            quota = _med(quotas) if quotas else 0.0
            honest = max(floor + server, quota)
            entry = {
                "ratio": round(b.median / honest, 3),
                "uart_only_ratio": round(b.median / floor, 3),
                "server_wait_s": round(server, 4),
                "quota_floor_s": round(quota, 4) if quotas else None,
                "honest_floor_s": round(honest, 4),
                "wall_s_median": round(b.median, 4),
                "uart_bytes_median": int(uart),
                "uart_tx_host_to_modem": int(_med(b.extra["uart_rx"])),
                "uart_tx_modem_to_host": int(_med(b.extra["uart_tx"])),
                "floor_s": round(floor, 4),
                "rounds": b.rounds,
            }
            p1_detail.setdefault(flow, {}).setdefault(fmt, {})[backend] = entry
            # The headline is by flow/backend (the brief); json is the format AWS documents first.
            if fmt == "json" or fmt not in ("json", "cbor"):
                p1.setdefault(flow, {})[backend] = entry
            p2.setdefault(flow, {}).setdefault(fmt, {})[backend] = _air(b)
        elif s == "p2_sdk":
            p2["awsiotsdk"] = {"flow": "combined", "format": "json", **_air(b)}
            p4["awsiotsdk_s_median"] = round(b.median, 4)
            p4["awsiotsdk_rounds"] = b.rounds
        elif s == "p4":
            p4["ours_s_median"] = round(b.median, 4)
            p4["ours_rounds"] = b.rounds
            p4["ours_backend"] = b.extra.get("backend", "host")
            # Not the driver's host backend (that one also writes the modem): the cloud half alone, as P4 runs it.
            p2.setdefault("combined", {}).setdefault("json", {})["host-no-modem"] = _air(b)
    if "ours_s_median" in p4 and "awsiotsdk_s_median" in p4:
        p4["ratio"] = round(p4["ours_s_median"] / p4["awsiotsdk_s_median"], 3)
    if p1_detail:
        p1["_by_format"] = p1_detail
    return p1, p2, p4


def _air(b: Bench) -> dict[str, Any]:
    up = _med(b.extra["air_up"])
    down = _med(b.extra["air_down"])
    tickets = _med(b.extra.get("ticket_bytes", [0]))
    return {
        "up": int(up),
        "down": int(down),
        "total": int(up + down),
        "tls13_ticket_bytes": int(tickets),
        "total_without_tickets": int(up + down - tickets),
        "tls": b.extra.get("tls", "?"),
        "connections": b.extra.get("connections"),
        "rounds": b.rounds,
    }


# -- P3/P5: pairs by size ---------------------------------------------------------------------------

_PEER_WORDS = ("openssl", "paho", "ssl")
_REF_WORDS = ("python", "json.loads", "cbor2", "reference", "stdlib")


def _side(b: Bench, peer_words: tuple[str, ...], ours_words: tuple[str, ...]) -> str:
    impl = str(b.extra.get("impl", "")).lower()
    if impl:
        return "peer" if impl in peer_words or impl in ("peer", "ref") else "ours"
    text = b.text
    if any(w in text for w in ours_words):
        return "ours"
    return "peer" if any(w in text for w in peer_words) else "ours"


def _format_of(b: Bench) -> str:
    fmt = b.extra.get("format") or b.params.get("format") or b.params.get("fmt")
    if fmt:
        return str(fmt)
    return "cbor" if "cbor" in b.text else "json"


def pairs(benches: list[Bench], suite: str, *, by_format: bool) -> dict[str, Any]:
    """Pair our side and the peer side per (format,) size; ratio = peer time / our time (higher is better)."""
    peer_words: tuple[str, ...]
    ours_words: tuple[str, ...]
    if suite == "p3":
        peer_words, ours_words = _PEER_WORDS, ("bridge", "native", "mbedtls")
    else:
        peer_words, ours_words = _REF_WORDS, ("native", "extractor", "_c_", "[c-", "-c]", "cffi")
    table: dict[str, dict[int, dict[str, Bench]]] = {}
    for b in benches:
        if suite_of(b) != suite:
            continue
        size = size_of(b)
        if size is None:
            continue
        fmt = _format_of(b) if by_format else "-"
        table.setdefault(fmt, {}).setdefault(size, {})[_side(b, peer_words, ours_words)] = b
    # P3 times a round trip (the payload goes up and comes back): throughput counts both ways.
    ways = 2 if suite == "p3" else 1
    out: dict[str, Any] = {}
    for fmt, by_size in sorted(table.items()):
        rows: dict[str, Any] = {}
        for size, sides in sorted(by_size.items()):
            if "ours" not in sides or "peer" not in sides:
                continue
            ours, peer = sides["ours"], sides["peer"]
            rows[str(size)] = {
                "ratio": round(peer.median / ours.median, 3),
                "ours_s_median": ours.median,
                "peer_s_median": peer.median,
                "ours_mb_s": round(ways * size / ours.median / 1e6, 3),
                "peer_mb_s": round(ways * size / peer.median / 1e6, 3),
                "ours": ours.name,
                "peer": peer.name,
            }
        if rows:
            out[fmt] = rows
    return out if by_format else out.get("-", {})


# -- goals ------------------------------------------------------------------------------------------


def _ratios(tree: Any, key: str = "ratio") -> list[float]:
    found: list[float] = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            if k == key and isinstance(v, int | float):
                found.append(float(v))
            elif not k.startswith("_"):
                found.extend(_ratios(v, key))
    return found


def goals(summary: dict[str, Any]) -> dict[str, Any]:
    """One entry per goal: label, target, measured (the worst row), met (None: not measured)."""
    from p7report import bytes_goal
    from p7report import goals as p7_goals

    out: dict[str, Any] = {}

    def judge(name: str, values: list[float], **more: Any) -> None:
        label, op, target = GOALS[name]
        if not values:
            out[name] = {"label": label, "target": f"{op} {target}", "measured": None, "met": None, **more}
            return
        worst = max(values) if op == "<=" else min(values)
        met = worst <= target if op == "<=" else worst >= target
        out[name] = {"label": label, "target": f"{op} {target}", "measured": round(worst, 3), "met": met, **more}

    from p6report import goals as p6_goals

    p7 = summary.get("p7_network", {})
    out.update(p7_goals(p7, summary))
    out.update(p6_goals(summary.get("p6_station", {})))
    # The floor bounds a run only if all its traffic crosses the UART: true for native and offload; the
    # host backend's cloud traffic uses the host's own TCP, so its rows are shown but do not decide.
    p1_all = summary["p1_uart_ratio"].get("_by_format", {})
    modem_only = [e["ratio"] for by_fmt in p1_all.values() for by_b in by_fmt.values()
                  for b, e in by_b.items() if b in ("native", "offload")]
    host_rows = [e["ratio"] for by_fmt in p1_all.values() for by_b in by_fmt.values()
                 for b, e in by_b.items() if b == "host"]
    judge("p1", modem_only, **({"worst_host_backend_not_judged": round(max(host_rows), 3)} if host_rows else {}))
    b = bytes_goal(p7) if p7 else {"measured": None}
    if b["measured"] is not None:
        out["p2"] = {**b, "target": f"<= {b['target']}"}
    else:  # without P7: P2's own combined rows against awsiotsdk's combined run
        sdk = summary["p2_air_bytes"].get("awsiotsdk")
        ours_combined = summary["p2_air_bytes"].get("combined", {}).get("json", {})
        judge("p2", [v["total_without_tickets"] / sdk["total_without_tickets"] for v in ours_combined.values()]
              if sdk else [])
    judge("p3", _ratios(summary["p3_bridge_vs_openssl"]))
    judge("p4", _ratios(summary["p4_vs_awsiotsdk"]))
    judge("p5", _ratios(summary["p5_c_vs_python"]))
    return out


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("nrfprov", "python-mbedtls", "paho-mqtt", "awsiotsdk", "awscrt", "cbor2", "cffi",
                 "pytest-benchmark", "pyserial", "cryptography"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        import ssl

        out["openssl"] = ssl.OPENSSL_VERSION
        import mbedtls.version as mv

        out["mbedtls"] = str(mv.version)
    except ImportError:
        pass
    import subprocess

    try:
        proc = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, timeout=5,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        first = (proc.stdout or proc.stderr).splitlines()[0]
        out["mosquitto"] = first.strip()
    except (OSError, IndexError, subprocess.TimeoutExpired):
        out["mosquitto"] = "not found"
    return out


def machine(raw: dict[str, Any]) -> dict[str, Any]:
    mi = raw.get("machine_info", {})
    cpu = mi.get("cpu", {})
    return {
        "node": mi.get("node"),
        "system": f"{mi.get('system')} {mi.get('release')}",
        "machine": mi.get("machine"),
        "cpu": cpu.get("brand_raw"),
        "cpu_count": cpu.get("count"),
        "python": f"{mi.get('python_implementation')} {mi.get('python_version')}",
        "datetime": raw.get("datetime"),
        "commit": (raw.get("commit_info") or {}).get("id"),
        "dirty": (raw.get("commit_info") or {}).get("dirty"),
        # The run shares the machine with whatever else runs; the load average says how much did
        # (recorded by benchmarks/conftest.py at the start and end of the pytest run).
        "load_average_1_5_15": raw.get("nrfprov_load_average"),
    }


def extras(benches: list[Bench]) -> dict[str, Any]:
    """Figures reported beside the pairs: P3 handshake bytes by client key type, P5 in 2 KB chunks."""
    out: dict[str, Any] = {}
    for b in benches:
        s = suite_of(b)
        if s == "p3_handshake":
            out.setdefault("p3_handshake_bytes", {})[str(b.extra.get("key_type"))] = {
                k: b.extra.get(k) for k in ("bytes_up", "bytes_down", "writes", "cipher")
            } | {"seconds_median": b.median}
        elif s == "p5_stream":
            size = size_of(b)
            out.setdefault("p5_c_device_chunks", {}).setdefault(_format_of(b), {})[str(size)] = {
                "chunk": b.extra.get("chunk"), "state_size": b.extra.get("state_size"),
                "s_median": b.median, "mb_s": round((size or 0) / b.median / 1e6, 3),
            }
    return out


def build_summary(raw: dict[str, Any], benches: list[Bench]) -> dict[str, Any]:
    p1, p2, p4 = provisioning(benches)
    summary: dict[str, Any] = {
        "machine": machine(raw),
        "versions": versions(),
        "p1_uart_ratio": p1,
        "p2_air_bytes": p2,
        "p3_bridge_vs_openssl": pairs(benches, "p3", by_format=False),
        "p4_vs_awsiotsdk": p4,
        "p5_c_vs_python": pairs(benches, "p5", by_format=True),
        "p6_station": p6_summarize(benches),
        "p7_network": p7_summarize(benches),
        **extras(benches),
    }
    summary["goals"] = goals(summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("raw", type=Path, help="pytest-benchmark --benchmark-json output")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="folder for summary.json and the PNG")
    ap.add_argument("--results-md", type=Path, default=HERE / "RESULTS.md")
    ap.add_argument("--notes", type=Path, default=HERE / "notes.md",
                    help="hand-written findings (profiles, causes) appended to RESULTS.md")
    ap.add_argument("--no-plot", action="store_true",
                    help="skip the PNG (matplotlib is in the bench extra; the normal test suite lacks it)")
    args = ap.parse_args(argv)
    raw, benches = load(args.raw)
    if not benches:
        print(f"{args.raw}: no benchmarks in it; did pytest run with --benchmark-only?", file=sys.stderr)
        return 1
    summary = build_summary(raw, benches)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    from p7report import plot as p7_plot
    from render import plot, results_markdown  # sibling module; report.py runs as a script

    png = args.out / "payload_size.png"
    p7_png = args.out / "p7_network.png"
    if not args.no_plot:
        plot(summary, png)
        if summary["p7_network"]:
            p7_plot(summary["p7_network"], p7_png)
    notes = args.notes.read_text() if args.notes.exists() else ""
    rel = args.results_md.parent
    args.results_md.write_text(results_markdown(
        summary, png_rel=png.relative_to(rel), notes=notes,
        p7_png_rel=p7_png.relative_to(rel) if summary["p7_network"] and not args.no_plot else None))
    print(f"wrote {args.out / 'summary.json'}, {args.results_md}" + ("" if args.no_plot else f", {png}"))
    for name, g in summary["goals"].items():
        measured = g["measured"] if not isinstance(g["measured"], dict) else g["measured"].get("worst_above_minimum")
        print(f"  {name}: {g['label']} {g['target']}: measured {measured} -> "
              f"{'met' if g['met'] else 'NOT met' if g['met'] is False else 'not measured'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
