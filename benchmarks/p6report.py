"""P6 (``nrfprov station`` over 100 simulated modems) in the report: the summary, the goals and the
RESULTS.md section. Called by report.py / render.py; the raw figures come from test_p6_station.py
(``extra_info["suite"] == "p6"``).
"""

from __future__ import annotations

from typing import Any

#: The station issue's goals: every device provisioned, none failed, no issued key lost; CPU seconds
#: per device of the station process; its peak RSS per device.
CPU_PER_DEVICE_S = 0.15
RSS_PER_DEVICE_MB = 5.0

FIELDS = ("devices", "baud", "flow", "backend", "provisioned", "failed", "exit_code", "keys_lost",
          "certificates_issued", "wall_s", "devices_per_min", "cpu_s", "cpu_s_per_device", "peak_rss_mb",
          "rss_mb_per_device", "device_seconds_median", "throttle_retries", "single_runs", "single_wall_s",
          "single_cpu_s", "single_peak_rss_mb", "one_by_one_s_extrapolated", "station_vs_one_by_one",
          "request_rate", "load_average_end")


def summarize(benches: list[Any]) -> dict[str, Any]:
    """``p6_station``: the figures of the (one) station run, {} when P6 did not run."""
    for b in benches:
        if b.extra.get("suite") == "p6":
            return {k: b.extra.get(k) for k in FIELDS}
    return {}


def goals(p6: dict[str, Any]) -> dict[str, Any]:
    if not p6:
        return {}
    all_ok = p6["provisioned"] == p6["devices"] and p6["failed"] == 0 and p6["keys_lost"] == 0
    return {
        "p6_all": {"label": f"P6 {p6['devices']} modems: provisioned / failed / issued keys lost",
                   "target": f"{p6['devices']} / 0 / 0",
                   "measured": f"{p6['provisioned']} / {p6['failed']} / {p6['keys_lost']}", "met": all_ok},
        "p6_cpu": {"label": "P6 station process CPU seconds per device", "target": f"<= {CPU_PER_DEVICE_S}",
                   "measured": p6["cpu_s_per_device"], "met": p6["cpu_s_per_device"] <= CPU_PER_DEVICE_S},
        "p6_rss": {"label": "P6 station process peak RSS per device (MB)", "target": f"<= {RSS_PER_DEVICE_MB}",
                   "measured": p6["rss_mb_per_device"], "met": p6["rss_mb_per_device"] <= RSS_PER_DEVICE_MB},
    }


def markdown(p6: dict[str, Any]) -> list[str]:
    if not p6:
        return []
    singles = ", ".join(f"{w:.2f} s" for w in p6["single_wall_s"])
    return [
        f"## P6: one station run, {p6['devices']} simulated modems at {p6['baud']} baud",
        "",
        f"`nrfprov station --json` over `nrfprov sim --count {p6['devices']} --baud {p6['baud']}` (one process "
        "for all modems), against the session's stand-in (its own process, default throttling 10 requests/s,",
        f"one CONNECT per second per client id); {p6['flow']} flow, {p6['backend']} TLS; the station's request "
        f"bucket at its default {p6['request_rate']}/s. CPU and peak RSS are the station process's own.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| provisioned / failed / issued keys lost | {p6['provisioned']} / {p6['failed']} / {p6['keys_lost']} "
        f"(certificates issued {p6['certificates_issued']}) |",
        f"| station wall time | {p6['wall_s']} s |",
        f"| devices per minute | {p6['devices_per_min']} |",
        f"| station CPU (user + system) | {p6['cpu_s']} s = {p6['cpu_s_per_device']} s per device "
        f"(goal <= {CPU_PER_DEVICE_S}) |",
        f"| station peak RSS | {p6['peak_rss_mb']} MB = {p6['rss_mb_per_device']} MB per device "
        f"(goal <= {RSS_PER_DEVICE_MB}) |",
        f"| median device time inside the station | {p6['device_seconds_median']} s |",
        f"| throttled requests repeated | {p6['throttle_retries']} |",
        f"| single `nrfprov provision` runs | {singles} wall; CPU {p6['single_cpu_s']} s; peak RSS "
        f"{p6['single_peak_rss_mb']} MB |",
        f"| one by one (extrapolated) | {p6['one_by_one_s_extrapolated']} s = mean of {p6['single_runs']} single "
        f"runs x {p6['devices']} |",
        f"| station ÷ one by one | {p6['station_vs_one_by_one']} |",
        "",
        f"The one-by-one time is extrapolated from {p6['single_runs']} measured single-device runs, not measured "
        f"for all {p6['devices']}. Load average at the end: {p6['load_average_end']}.",
        "",
    ]
