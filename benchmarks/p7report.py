"""P7 (provisioning over LTE-M and NB-IoT) in the report: the summary, the protocol minimum, the goals,
the RESULTS.md section and the plot. Called by report.py / render.py; the raw figures come from
test_p7_network.py (``extra_info["suite"] == "p7"``).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

CLIENTS = ("nrfprov", "sample", "awsiotsdk")
FIGURES = ("seconds", "round_trips", "dns", "tcp", "exchanges", "up", "down", "uart_commands", "wall",
           "server_wait")

# The protocol minimum, on paper (RESULTS.md derives it): DNS once, then per connection TCP (1) and a
# TLS 1.2 full handshake with client authentication (2); on the claim connection CONNECT, SUBSCRIBE and
# the request back to back (1), RegisterThing after the reply (1, combined/csr); on the reconnect
# CONNECT and the proof PUBLISH back to back (1). DISCONNECT and the TCP close are not waited for.
MINIMUM_PARTS = {"dns": 1, "tcp": 2, "tls": 4, "request": 1, "register": 1, "proof": 1}


def minimum(flow: str) -> dict[str, int]:
    parts = dict(MINIMUM_PARTS)
    if flow == "split":
        parts["register"] = 0
    total = sum(parts.values())
    # AWS asks Fleet Provisioning clients to subscribe before publishing: waiting for the SUBACK first
    # costs one round trip (CONFIG_NRFPROV_PUBLISH_BEFORE_SUBACK=y saves it).
    return {**parts, "total": total, "with_suback_wait": total + 1}


def _med(values: Any) -> float | None:
    vals = [v for v in (values or []) if v is not None]
    return statistics.median(vals) if vals else None


def summarize(benches: list[Any]) -> dict[str, Any]:
    """``p7_network``: one row per client x flow x format x backend x network, medians of the rounds."""
    rows: list[dict[str, Any]] = []
    for b in benches:
        e = b.extra
        if e.get("suite") != "p7":
            continue
        row: dict[str, Any] = {k: e.get(k) for k in ("client", "flow", "format", "backend", "network")}
        # Variants: the modem dialect (default sm) and a round-trip option switched on (default none).
        row["dialect"] = e.get("dialect") or ("-" if row["client"] == "awsiotsdk" else "sm")
        row["option"] = e.get("option") or ""
        for k in FIGURES:
            if k in e:
                m = _med(e[k])
                row[k] = round(m, 4) if isinstance(m, float) else m
        secs = e.get("seconds") or []
        row["seconds_spread"] = round(max(secs) - min(secs), 4) if len(secs) > 1 else 0.0
        row["rounds"] = e.get("rounds_measured", b.rounds)
        if "uart_by_command" in e:
            row["uart_by_command"] = e["uart_by_command"]
        rows.append(row)
    if not rows:
        return {}
    flows = sorted({r["flow"] for r in rows})
    return {"rows": rows, "minimum": {f: minimum(f) for f in flows}}


def _find(rows: list[dict[str, Any]], **key: str) -> list[dict[str, Any]]:
    """Rows matching ``key``; without a dialect / option in it, the default variant only."""
    key = {"option": "", **key}
    if key.get("client") != "awsiotsdk":
        key.setdefault("dialect", "sm")
    return [r for r in rows if all(r.get(k) == v for k, v in key.items())]


def _ours(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return _find(rows, client="nrfprov")


def goals(p7: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals that P7 decides: round trips and NB-IoT time (P1, P2, P4 are in report.py)."""
    out: dict[str, Any] = {}
    rows = p7.get("rows", [])
    ours = _ours(rows)
    if not ours:
        out["p7_round_trips"] = {"label": "round trips on the air ≤ protocol minimum + 1, and fewer than the "
                                 "sample's sequence and awsiotsdk (same flow)", "target": "min + 1; < sample; "
                                 "< awsiotsdk", "measured": None, "met": None}
        out["p7_nbiot_time"] = {"label": "time to provisioned on nb-iot ÷ awsiotsdk's (same flow)",
                                "target": 0.75, "measured": None, "met": None}
        return out
    checks = []
    for r in ours:
        minimum_total = p7["minimum"][r["flow"]]["total"]
        sample = _find(rows, client="sample", flow=r["flow"], backend=r["backend"], format=r["format"],
                       network=r["network"])
        sdk = _find(rows, client="awsiotsdk", flow=r["flow"], network=r["network"])
        checks.append({
            "row": f"{r['flow']}/{r['format']}/{r['backend']}/{r['network']}", "ours": r["round_trips"],
            "minimum": minimum_total, "sample": sample[0]["round_trips"] if sample else None,
            "awsiotsdk": sdk[0]["round_trips"] if sdk else None,
        })
    worst_excess = max(c["ours"] - c["minimum"] for c in checks)
    met = all(c["ours"] <= c["minimum"] + 1 and c["sample"] is not None and c["ours"] < c["sample"]
              and c["awsiotsdk"] is not None and c["ours"] < c["awsiotsdk"] for c in checks)
    out["p7_round_trips"] = {
        "label": "round trips on the air ≤ protocol minimum + 1, and fewer than the sample's sequence and "
                 "awsiotsdk (same flow)",
        "target": "≤ minimum + 1; < sample; < awsiotsdk",
        "measured": {"worst_above_minimum": worst_excess,
                     "not_below_sample": [c["row"] for c in checks if c["sample"] is None or c["ours"] >= c["sample"]],
                     "not_below_awsiotsdk": [c["row"] for c in checks
                                             if c["awsiotsdk"] is None or c["ours"] >= c["awsiotsdk"]],
                     "rows": checks},
        "met": met,
    }
    ratios = {}
    for r in ours:
        if r["network"] != "nb-iot":
            continue
        sdk = _find(rows, client="awsiotsdk", flow=r["flow"], network="nb-iot")
        if sdk and sdk[0].get("seconds"):
            ratios[f"{r['flow']}/{r['format']}/{r['backend']}"] = round(r["seconds"] / sdk[0]["seconds"], 3)
    worst = max(ratios.values()) if ratios else None
    out["p7_nbiot_time"] = {"label": "time to provisioned on nb-iot ÷ awsiotsdk's (same flow)", "target": 0.75,
                            "measured": worst, "per_row": ratios, "met": None if worst is None else worst <= 0.75}
    return out


def bytes_goal(p7: dict[str, Any]) -> dict[str, Any]:
    """P2 in the issue's terms: our bytes on the air ÷ awsiotsdk's for the same flow and profile (the bytes
    hardly depend on the profile; the worst profile counts), TCP payload both ways."""
    rows = p7.get("rows", [])
    ratios: dict[str, float] = {}
    for r in _ours(rows):
        sdk = _find(rows, client="awsiotsdk", flow=r["flow"], network=r["network"])
        if sdk:
            key = f"{r['flow']}/{r['format']}/{r['backend']}"
            ratio = round((r["up"] + r["down"]) / (sdk[0]["up"] + sdk[0]["down"]), 3)
            ratios[key] = max(ratio, ratios.get(key, 0.0))
    worst = max(ratios.values()) if ratios else None
    return {"label": "P2 bytes on the air ÷ awsiotsdk's (same flow, TCP payload both ways)", "target": 0.75,
            "measured": worst, "per_row": ratios, "met": None if worst is None else worst <= 0.75}


# -- RESULTS.md -------------------------------------------------------------------------------------


def _t(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join("-" if c is None else str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


#: The derivation of the protocol minimum, with its sources (hand-written; included in RESULTS.md).
MINIMUM_MD = Path(__file__).resolve().parent / "p7_minimum.md"


def markdown(p7: dict[str, Any], png_rel: Path | None) -> list[str]:
    if not p7:
        return ["## P7: provisioning over LTE-M and NB-IoT", "", "_not measured_", ""]
    rows = p7["rows"]
    order = {c: i for i, c in enumerate(CLIENTS)}
    rows = sorted(rows, key=lambda r: (r["network"], r["flow"], r["backend"], r["format"], order.get(r["client"], 9),
                                       r["dialect"], r["option"]))
    out = [
        "## P7: provisioning over LTE-M and NB-IoT (simulated radio)",
        "",
        "Each flow x backend on the simulated nRF91 (Serial Modem dialect, 115200 baud) whose sockets cross the",
        "simulator's radio (`nrfprov sim --network`: LTE-M RTT 150 ms, 375/300 kbit/s; NB-IoT RTT 1.6 s,",
        "62.5/26 kbit/s), by nrfprov and by the Nordic sample's sequence replayed with our client without",
        "optimisation; awsiotsdk on the host through a relay with the same radio model (TLS 1.3). Seconds: from",
        "the start to the arrival of the proof's PUBACK (LTE attach excluded: attach delay 0). RT: round trips",
        "on the air (DNS + TCP + exchanges), counted at the device's end of the radio: every DNS lookup, every",
        "TCP connect, and every time the device sent and then received data that arrived at least one RTT",
        "later (an answer cannot come sooner) before it sent again on that connection (benchmarks/airtime.py).",
        "Bytes: TCP payload, TLS included (DNS goes over UDP and is not in them). UART: AT command turnarounds.",
        "",
    ]
    table = []
    for r in rows:
        m = p7["minimum"].get(r["flow"], {})
        client = r["client"] + (f" ({r['dialect']})" if r["dialect"] not in ("sm", "-") else "") + (
            f" + {r['option']}" if r["option"] else "")
        table.append([r["network"], r["flow"], r["format"], r["backend"], client, r.get("seconds"),
                      r.get("seconds_spread"), r.get("round_trips"), m.get("total"), r.get("dns"), r.get("tcp"),
                      r.get("exchanges"), r.get("up"), r.get("down"), r.get("uart_commands"), r.get("rounds")])
    out += [_t(["network", "flow", "format", "backend", "client", "seconds", "spread s", "RT", "minimum", "DNS",
                "TCP", "exchanges", "bytes up", "bytes down", "UART", "rounds"], table), "",
            "`+ publish_before_suback`: `CONFIG_NRFPROV_PUBLISH_BEFORE_SUBACK=y` (off by default, see",
            "docs/provisioning.md). `(slm)`: legacy SLM dialect (default: Serial Modem). The goals judge the",
            "defaults.", ""]
    if png_rel is not None:
        out += [f"![time to provisioned per flow and profile]({png_rel})", ""]
    out += [MINIMUM_MD.read_text().strip(), "",
            "Ours against the minimum, the sample's sequence and awsiotsdk (round trips, same flow):", ""]
    cmp_rows = []
    for r in _ours(rows):
        sample = _find(p7["rows"], client="sample", flow=r["flow"], backend=r["backend"], format=r["format"],
                       network=r["network"])
        sdk = _find(p7["rows"], client="awsiotsdk", flow=r["flow"], network=r["network"])
        m = p7["minimum"][r["flow"]]
        cmp_rows.append([r["network"], f"{r['flow']}/{r['format']}/{r['backend']}", m["total"], m["with_suback_wait"],
                         r["round_trips"], sample[0]["round_trips"] if sample else None,
                         sdk[0]["round_trips"] if sdk else None])
    out += [_t(["network", "flow", "minimum", "minimum with SUBACK wait", "nrfprov", "sample sequence",
                "awsiotsdk"], cmp_rows), ""]
    return out


def plot(p7: dict[str, Any], path: Path) -> None:
    """Time to provisioned per flow x backend, one panel per profile, one bar per client."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    networks = sorted({r["network"] for r in p7.get("rows", [])})
    fig, axes = plt.subplots(1, max(1, len(networks)), figsize=(12, 4.4), squeeze=False)
    for ax, net in zip(axes[0], networks, strict=False):
        rows = [r for r in p7["rows"] if r["network"] == net and not r["option"] and r["dialect"] in ("sm", "-")]
        combos = sorted({(r["flow"], r["format"], r["backend"]) for r in rows if r["client"] != "awsiotsdk"})
        width = 0.27
        for i, client in enumerate(CLIENTS):
            ys = []
            for flow, fmt, backend in combos:
                if client == "awsiotsdk":
                    hit = _find(rows, client=client, flow=flow)
                else:
                    hit = _find(rows, client=client, flow=flow, format=fmt, backend=backend)
                ys.append(hit[0]["seconds"] if hit else 0.0)
            ax.bar([x + (i - 1) * width for x in range(len(combos))], ys, width, label=client)
        ax.set_xticks(range(len(combos)), [f"{f}\n{fm}/{b}" for f, fm, b in combos], fontsize=7)
        ax.set(ylabel="seconds to the reconnect proof", title=f"{net}")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)
    fig.suptitle("P7 time to provisioned (simulated radio; awsiotsdk: same flow, TLS 1.3)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
