"""The pure half of bench/perf.py: percentiles, ratios, target checks, the table and the JSON.

No I/O besides `write_json`; tests/bench/test_perf_harness.py folds these by hand.
A result is one plain dict (the JSON written for later comparison):

    {"run": {...}, "throughput": {"A": stage, "B": stage, "C": stage, "D": stage, "D2": stage},
     "latency": [phase, ...], "memory": {...}, "profile": {...}}

A stage is {"events", "seconds", "events_per_s", "partial", "note"}; `partial` means the
stage hit its time cap and the rate is over what it processed by then.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

STAGE_NAMES = {
    "A": "raw aiokafka getmany + orjson.loads (limit)",
    "B": "stock Faust agent, no-op per event",
    "Bw": "the same agent on Warden's consumer (not in the ratios)",
    "C": "Faust tutorial-style friend_add_burst, 1 Table update/event",
    "D_crashed": "Warden worker, default settings (CRASHED, see below)",
    "D": "Warden worker, full pipeline to Redis",
    "D2": "Warden, 2 workers, 2x partitions",
}
IDLE_ACCOUNT_BUDGET_BYTES = 1024
LATENCY_P99_TARGET_MS = 250.0


def stage(events: int, seconds: float, *, partial: bool = False, note: str = "") -> dict[str, Any]:
    """A throughput measurement: `events` processed between the first and the last, in seconds."""
    rate = events / seconds if seconds > 0 else 0.0
    return {"events": events, "seconds": round(seconds, 3), "events_per_s": round(rate, 1),
            "partial": partial, "note": note}


def percentile(samples: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted samples; None when empty."""
    if not samples:
        return None
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(samples_ms: Sequence[float]) -> dict[str, Any]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 1)

    return {"samples": len(samples_ms), "p50_ms": r(percentile(samples_ms, 50)),
            "p99_ms": r(percentile(samples_ms, 99)),
            "max_ms": r(max(samples_ms) if samples_ms else None)}


def rate_of(result: dict[str, Any], name: str) -> float | None:
    s = result.get("throughput", {}).get(name)
    return None if not s or not s.get("events_per_s") else float(s["events_per_s"])


def events_at(timeline: Sequence[Sequence[float]], seconds: float) -> float | None:
    """Events handled `seconds` after the first one, interpolated on a stage's timeline."""
    prev = None
    for t, n in timeline:
        if t >= seconds:
            if prev is None or t == prev[0]:
                return float(n)
            return prev[1] + (n - prev[1]) * (seconds - prev[0]) / (t - prev[0])
        prev = (t, n)
    return None


def same_window_rate(result: dict[str, Any], name: str, seconds: float) -> float | None:
    """A stage's rate over its first `seconds` (so a capped stage compares fairly)."""
    s = result.get("throughput", {}).get(name) or {}
    n = events_at(s.get("timeline") or (), seconds)
    return None if n is None or seconds <= 0 else n / seconds


def ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """D/A, D/B, D/C (None where a stage is missing) and, with two workers, D2/D."""
    d = rate_of(result, "D")
    out: dict[str, float | None] = {}
    for other in ("A", "B", "C"):
        o = rate_of(result, other)
        out[f"D/{other}"] = None if d is None or o is None else round(d / o, 3)
    d2 = rate_of(result, "D2")
    if d2 is not None:
        out["D2/D"] = None if d is None else round(d2 / d, 3)
        ends = [(result["throughput"].get(n) or {}).get("timeline") or () for n in ("D", "D2")]
        if all(ends):
            window = min(ends[0][-1][0], ends[1][-1][0])
            d_same, d2_same = (same_window_rate(result, n, window) for n in ("D", "D2"))
            out["D2/D same window"] = (None if not d_same or d2_same is None
                                       else round(d2_same / d_same, 3))
    return out


def targets(result: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    """Issue #5's targets: (target, met or None if not measured, the measured value)."""
    r = ratios(result)
    out: list[tuple[str, bool | None, str]] = []

    def ratio_target(name: str, key: str, bound: float) -> None:
        v = r.get(key)
        shown = "-" if v is None else f"{key} = {v:.3f}"
        out.append((name, None if v is None else v >= bound, shown))

    ratio_target("D >= 5 x C", "D/C", 5.0)
    ratio_target("D >= B", "D/B", 1.0)
    ratio_target("D >= 0.25 x A (aim)", "D/A", 0.25)
    phase = next(iter(result.get("latency") or ()), None)
    if phase and phase.get("p99_ms") is not None:
        met = phase["p99_ms"] <= LATENCY_P99_TARGET_MS and phase.get("kept_up", False)
        out.append((f"p99 event->Redis <= 250 ms at {phase['rate']:,.0f}/s", met,
                    f"p99 {phase['p99_ms']:,.0f} ms, kept up: {_yes(phase.get('kept_up'))}"))
    else:
        out.append(("p99 event->Redis <= 250 ms", None, "-"))
    out.append(idle_target(result.get("memory") or {}))
    if "D2/D" in r:
        v = r.get("D2/D same window") or r["D2/D"]
        out.append(("2 workers, 2x partitions: scaling (reported)", None,
                    "-" if v is None else f"x{v:.2f}"))
    return out


def idle_target(mem: dict[str, Any]) -> tuple[str, bool | None, str]:
    """Memory per idle account: what each account beyond the first N adds, when measured
    (the first N also pay for what the worker grows once, whatever the number of accounts);
    results from before the second round judge the first."""
    name = "<= 1 KiB per idle tracked account"
    first, further = mem.get("bytes_per_idle_account"), mem.get("bytes_per_further_idle_account")
    if further is not None:
        return (name, further <= IDLE_ACCOUNT_BUDGET_BYTES,
                f"{further:,.0f} B each past the first {mem['idle_accounts']:,} "
                f"(those: {_num(first)} B each)")
    if first is None:
        return (name, None, "-")
    return (name, first <= IDLE_ACCOUNT_BUDGET_BYTES, f"{first:,.0f} B")


def _yes(flag: Any) -> str:
    return "yes" if flag else "no"


def _num(value: Any, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def format_table(result: dict[str, Any]) -> str:
    """The plain-text report bench/perf.py prints (and the README quotes)."""
    run = result.get("run", {})
    lines = [f"Warden performance, {run.get('date', '?')}: {run.get('events', 0):,} events, "
             f"{run.get('accounts', 0):,} accounts, {run.get('partitions', '?')} partitions, "
             f"{run.get('cpus', '?')} CPUs shared with Kafka and Redis", "",
             f"{'stage':<9} {'what':<60} {'events':>9} {'s':>8} {'events/s':>10}"]
    loop = run.get("python_loop_s") or {}
    if loop.get("start") is not None:
        end = f", {loop['end']:.2f} s at the end" if loop.get("end") is not None else ""
        lines.insert(1, f"machine speed: a pure-Python loop of 10,000,000 additions took "
                        f"{loop['start']:.2f} s at the start{end}")
    for name, label in STAGE_NAMES.items():
        s = result.get("throughput", {}).get(name)
        if not s:
            continue
        mark = " (crashed)" if s.get("crashed") else " (partial: time cap)" if s.get(
            "partial") else ""
        lines.append(f"{name:<9} {label:<60} {s['events']:>9,} {s['seconds']:>8,.1f} "
                     f"{s['events_per_s']:>10,.0f}{mark}")
    for name, s in result.get("throughput", {}).items():
        if s.get("crashed"):
            lines.append(f"  {name}: the worker crashed: {s['crashed']}")
        if s.get("env"):
            lines.append(f"  {name}: worker run with {s['env']}")
        if s.get("cpu_us_per_event") is not None:
            lines.append(f"  {name}: worker CPU {s['cpu_s']:,.1f} s, "
                         f"{s['cpu_us_per_event']:,.0f} us per event")
        if s.get("hop_timeouts") is not None:
            lines.append(f"  {name}: {s['out_of_order']:,.0f} inputs out of event-time order, "
                         f"{s['align_timeouts']:,.0f} alignment waits and "
                         f"{s['hop_timeouts']:,.0f} device requests' hop waits ran out; "
                         f"input topics paused for replies {s.get('reply_pauses', 0):,.0f} times")
    r = ratios(result)
    lines += ["", "ratios: " + "   ".join(f"{k} = {_num(v, '.3f')}" for k, v in r.items())]
    for phase in result.get("latency") or ():
        lines += ["", f"latency, produce -> decision visible in Redis, offered "
                      f"{phase['rate']:,.0f} events/s for {phase['seconds']:.0f} s:",
                  f"  p50 {_num(phase.get('p50_ms'))} ms   p99 {_num(phase.get('p99_ms'))} ms   "
                  f"max {_num(phase.get('max_ms'))} ms   "
                  f"over {phase.get('samples', 0):,} decisions "
                  f"({phase.get('missing', 0):,} expected but not seen)",
                  f"  worker consumed {_num(phase.get('consumed_per_s'))} events/s while offered "
                  f"{_num(phase.get('offered_per_s'))}; kept up: {_yes(phase.get('kept_up'))}"]
        if phase.get("out_of_order") is not None:
            late = phase.get("out_of_order_by_topic") or {}
            lines.append(f"  inputs applied out of event-time order: {_num(phase['out_of_order'])}"
                         + (" (" + ", ".join(f"{t} {_num(n)}" for t, n in late.items()) + ")"
                            if late else "")
                         + f" (alignment waits that ran out: {_num(phase.get('align_timeouts'))})")
        waits = phase.get("record_wait_ms") or {}
        if waits:
            lines.append("  oldest record of each batch when its stage took it, mean: "
                         + ", ".join(f"{k} {_num(v)} ms" for k, v in waits.items()))
        causes = phase.get("by_cause") or {}
        if causes:
            lines.append("  by cause (input topic / first trigger):")
        for cause, c in causes.items():
            lines.append(f"    {cause:<44} p50 {_num(c.get('p50_ms')):>6} ms  "
                         f"p99 {_num(c.get('p99_ms')):>6} ms  over {c.get('samples', 0):,}")
    mem = result.get("memory") or {}
    if mem:
        lines += ["", "worker memory (RSS growth):"]
        if mem.get("bytes_per_idle_account") is not None:
            lines.append(f"  idle tracked accounts: the first {mem['idle_accounts']:,} -> "
                         f"{mem['bytes_per_idle_account']:,.0f} B each, "
                         f"{mem['bytes_per_idle_account'] * 100_000 / 2**20:,.1f} MiB per 100,000"
                         " (with what the worker grows once)")
        if mem.get("bytes_per_further_idle_account") is not None:
            per = mem["bytes_per_further_idle_account"]
            lines.append(f"  idle tracked accounts: the next {mem['idle_accounts']:,} -> "
                         f"{per:,.0f} B each, {per * 100_000 / 2**20:,.1f} MiB per 100,000")
        if mem.get("bytes_per_tracked_account") is not None:
            per = mem["bytes_per_tracked_account"]
            lines.append(f"  after stage D: {mem['tracked_accounts']:,} accounts in the workload"
                         f" -> {per:,.0f} B each, {per * 100_000 / 2**20:,.1f} MiB per 100,000")
    if result.get("error"):
        lines += ["", f"THE RUN STOPPED EARLY: {result['error'][:300]}"]
    lines += ["", "targets:"]
    for name, met, value in targets(result):
        verdict = "n/a" if met is None else ("met" if met else "NOT met")
        lines.append(f"  {name:<48} {verdict:<8} {value}")
    return "\n".join(lines)


def results_path(directory: Path, when: time.struct_time) -> Path:
    """Where a run's JSON goes by default: perf-<date>.json, or with the time when an earlier
    run of the day wrote that already (a later run must not overwrite what it is compared
    with; two runs on 2026-12-07 did)."""
    day = time.strftime("%Y-%m-%d", when)
    path = directory / f"perf-{day}.json"
    if not path.exists():
        return path
    stamp = time.strftime("%Y-%m-%d-%H%M", when)
    path, n = directory / f"perf-{stamp}.json", 2
    while path.exists():
        path, n = directory / f"perf-{stamp}-{n}.json", n + 1
    return path


def write_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    full = {**result, "ratios": ratios(result),
            "targets": [{"target": n, "met": m, "value": v} for n, m, v in targets(result)]}
    path.write_bytes(orjson.dumps(full, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
