"""Throughput of `warden replay`'s pure core on one core, and memory per tracked account.

    python bench/replay_throughput.py [--events N] [--accounts N] [--seed S] [--workload F]
                                      [--out-dir DIR] [--json]

1. Generates a seeded `warden simulate` workload (default 1,000,000 events over
   50,000 accounts, seed 1) into DIR, or reuses it if it is already there.
2. Baseline: reads the same file and `orjson.loads` every line, the raw limit
   of the input path (nothing can replay faster than it parses).
3. Replays it exactly as `warden replay` does (same parser, real Engine,
   decisions encoded and written to DIR/decisions.jsonl, the collector paused)
   and reports events/s, the ratio to the baseline and the decision count.
4. Memory per tracked account, after a final sweep: the deep size of the
   engine's account and device state (every object counted once, shared
   constants included once) divided by `len(engine.accounts)`; the same for
   "idle" accounts alone (no windows, no restriction: only devices, history and
   reporter record); and the RSS growth of the replay per tracked account, an
   upper bound that also holds the de-duplication ids and allocator slack.

Prints a plain table; writes the numbers to DIR/replay.json. Timings are wall
clock, single process, with the CPU time of the same runs beside them (on a
shared machine wall time also counts other processes); nothing here asserts
on them.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import orjson

from detectors.engine import Engine
from streams import simulate
from streams.replay import collector_paused, replay_lines

DEFAULT_DIR = Path("out/bench")


def workload(path: Path, *, events: int, accounts: int, seed: int) -> tuple[int, float]:
    """The events file (generated unless present); its line count and generation seconds."""
    if path.exists():
        with path.open("rb") as fh:
            return sum(1 for _ in fh), 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    pop = simulate.plan(accounts=accounts, events=events, seed=seed)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        n = simulate.write_events(pop.events(), fh)
    tmp.rename(path)
    return n, time.perf_counter() - started


def baseline(path: Path) -> tuple[int, float, float]:
    """Read the file and parse every line as JSON: lines, wall seconds, CPU seconds."""
    loads = orjson.loads
    started, cpu_started = time.perf_counter(), time.process_time()
    n = 0
    with path.open("rb") as fh:
        for line in fh:
            loads(line)
            n += 1
    return n, time.perf_counter() - started, time.process_time() - cpu_started


def rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def deep_size(roots: Iterable[Any], seen: set[int]) -> int:
    """Bytes of every object reachable from `roots` not already in `seen` (ids)."""
    total = 0
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, tuple | list | set | frozenset):
            stack.extend(obj)
        elif is_dataclass(obj):
            stack.extend(getattr(obj, f.name) for f in fields(obj))
    return total


def memory(engine: Engine) -> dict[str, Any]:
    """State bytes per tracked account, and per idle account (see the module docstring)."""
    accounts, devices = engine.accounts, engine.devices
    seen: set[int] = set()
    account_bytes = sys.getsizeof(accounts) + deep_size(accounts.items(), seen)
    device_bytes = sys.getsizeof(devices) + deep_size(devices.items(), seen)
    idle = {k: s for k, s in accounts.items() if not s.windows and s.lifecycle.restriction is None}
    slot = sys.getsizeof(accounts) / max(len(accounts), 1)  # the account's share of the table
    idle_bytes = deep_size(idle.items(), set()) + slot * len(idle)
    tracked = len(accounts)
    return {
        "tracked_accounts": tracked,
        "devices": len(devices),
        "state_bytes": account_bytes + device_bytes,
        "bytes_per_tracked_account": (account_bytes + device_bytes) / tracked if tracked else None,
        "account_bytes_per_tracked_account": account_bytes / tracked if tracked else None,
        "idle_accounts": len(idle),
        "bytes_per_idle_account": idle_bytes / len(idle) if idle else None,
    }


def replay(path: Path, decisions_path: Path) -> tuple[Engine, Any, int, float]:
    """Replay like the CLI does; returns the engine, the stats, the RSS growth (KiB) and the
    CPU seconds of the replay (on a shared machine, wall time also counts other processes)."""
    engine = Engine()
    rss_before = rss_kib()
    with path.open("rb") as source, decisions_path.open("wb") as out, collector_paused():
        cpu_started = time.process_time()
        stats = replay_lines(iter(source), engine, out, None)
        cpu_s = time.process_time() - cpu_started
    return engine, stats, rss_kib() - rss_before, cpu_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workload", type=Path,
                        help="events file to use (default: generated in --out-dir)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    args = parser.parse_args(argv)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    name = f"sim-{args.events}e-{args.accounts}a-seed{args.seed}.jsonl"
    path = args.workload or args.out_dir / name
    lines, generated_s = workload(path, events=args.events, accounts=args.accounts, seed=args.seed)
    base_lines, base_s, base_cpu_s = baseline(path)
    engine, stats, rss_growth_kib, cpu_s = replay(path, args.out_dir / "decisions.jsonl")
    engine.sweep()  # what a long-running replay holds between sweeps, not transient garbage
    mem = memory(engine)

    rate, cpu_rate = stats.lines / stats.seconds, stats.lines / max(cpu_s, 1e-9)
    base_rate, base_cpu_rate = base_lines / base_s, base_lines / max(base_cpu_s, 1e-9)
    result = {
        "workload": str(path), "events": lines, "generated_seconds": round(generated_s, 2),
        "baseline": {"what": "read + orjson.loads per line", "seconds": round(base_s, 3),
                     "events_per_s": round(base_rate), "cpu_seconds": round(base_cpu_s, 3),
                     "events_per_cpu_s": round(base_cpu_rate)},
        "replay": {"seconds": round(stats.seconds, 3), "events_per_s": round(rate),
                   "share_of_baseline": round(rate / base_rate, 4),
                   "cpu_seconds": round(cpu_s, 3), "events_per_cpu_s": round(cpu_rate),
                   "cpu_share_of_baseline": round(cpu_rate / base_cpu_rate, 4),
                   "accepted": stats.accepted, "duplicates": stats.duplicates,
                   "rejected": sum(stats.rejected.values()),
                   "decisions": sum(stats.decisions.values()),
                   "decisions_by_type": dict(sorted(stats.decisions.items()))},
        "memory": {**{k: (round(v, 1) if isinstance(v, float) else v) for k, v in mem.items()},
                   "rss_growth_kib": rss_growth_kib,
                   "rss_growth_bytes_per_tracked_account":
                       round(rss_growth_kib * 1024 / mem["tracked_accounts"], 1)
                       if mem["tracked_accounts"] else None},
        "python": sys.version.split()[0],
    }
    (args.out_dir / "replay.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    else:
        print(table(result))
    return 0


def table(r: dict[str, Any]) -> str:
    m, rp, b = r["memory"], r["replay"], r["baseline"]
    rows = [
        ("workload", f"{r['events']:,} events ({r['workload']})"),
        ("baseline: read + orjson.loads",
         f"{b['events_per_s']:>12,} events/s  ({b['seconds']:.2f} s)"),
        ("replay (real Engine)", f"{rp['events_per_s']:>12,} events/s  ({rp['seconds']:.2f} s)"),
        ("replay / baseline", f"{rp['share_of_baseline']:>12.1%}"),
        ("replay, per CPU second", f"{rp['events_per_cpu_s']:>12,} events/s  "
                                   f"({rp['cpu_seconds']:.2f} s CPU; "
                                   f"{rp['cpu_share_of_baseline']:.1%} of the baseline's)"),
        ("decisions", f"{rp['decisions']:>12,}"),
        ("tracked accounts / devices", f"{m['tracked_accounts']:>12,} / {m['devices']:,}"),
        ("state bytes per tracked account",
         f"{m['bytes_per_tracked_account']:>12,.0f}"
         f"  (accounts {m['account_bytes_per_tracked_account']:,.0f} + devices)"),
        ("bytes per idle account",
         f"{m['bytes_per_idle_account'] or 0:>12,.0f}  ({m['idle_accounts']:,} idle)"),
        ("RSS growth per tracked account",
         f"{m['rss_growth_bytes_per_tracked_account'] or 0:>12,.0f}"
         "  (upper bound: includes dedupe ids)"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


if __name__ == "__main__":
    sys.exit(main())
