"""Warden against the raw limit and the Faust it runs on (issue #5): one command, one run.

    make perf            # = .venv/bin/python bench/perf.py (needs `make services-up`)
    python bench/perf.py [--events 500000] [--accounts N] [--partitions 4] [--cap-s 900]
                         [--latency-seconds 60] [--rate 2000] [--idle-accounts 100000]
                         [--scaling [--scaling-cap-s 300]] [--profile-s 60]
                         [--skip A,B,C,D,latency,memory]
                         [--out bench/results/perf-<date>[-<HHMM>].json] [--keep]

1. Publishes one seeded `warden simulate` workload (all input topics, keyed as the spec
   says, Pareto-skewed activity) ONCE, as fast as a batching producer goes, to a prefix unique
   to this run. Its event time ends now, so the worker's wall-clock idle advance fires nothing
   extra.
2. Throughput, each stage a separate process reading every input topic from the beginning with
   its own consumer group, timed from the first event handed to user code to the last one:
   A raw aiokafka getmany + orjson.loads; B stock Faust agent, no-op; Bw the same agent on
   Warden's consumer (streams/consumer.py; not in the ratios: it shows what the consumer
   alone changes); C tutorial-style Faust friend_add_burst (bench/perf_consumers.py); D the
   Warden worker (`python -m streams.cli
   worker`). D is timed from the first poll of its /metrics (every 0.2 s) showing
   `warden_events_total` > 0 (the events counted by then are not counted, nor inputs read
   again after a rebalance: D2's two workers start apart) to the last poll at
   which `warden_projection_applied_total`
   changed, once its group has committed every input, both inboxes and account-decisions
   (zero lag: every decision is on the log and applied to Redis). A stage that reaches
   `--cap-s` is stopped and reported as partial: events handled by then over time elapsed.
   For D that is `warden_inputs_settled_total` (applied with their cross-key replies,
   ignored as duplicates, or dead-lettered), not events consumed: without back-pressure
   a worker read a backlog far ahead of the replies its inputs were waiting for.
3. Latency at `--rate` for `--latency-seconds`, and idle memory: RSS growth over
   `--idle-accounts` idle accounts, then over as many more (bench/perf_latency.py).
4. With `--scaling`: the same workload on 2x partitions, two workers in one group (D2).
5. Prints a plain table and writes the JSON; stops every process it started, deletes its
   topics and Redis keys (unless `--keep`). The shared broker and Redis are never stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from perf_latency import idle_memory, latency_phase
from perf_live import (
    REPO,
    Lag,
    Worker,
    cpu_seconds,
    create_topics,
    delete_topics,
    publish,
    redis_cleanup,
    rss_bytes,
    stop,
    worker_env,
    worker_topics,
)
from perf_report import format_table, results_path, stage, write_json

from streams import simulate
from streams.topics import TopicNames

DAY_MS = 86_400_000
STAGES = ("A", "B", "Bw", "C", "D", "latency", "memory")
CONSUMER_KIND = {"A": "raw", "B": "faust-noop", "Bw": "faust-noop-warden", "C": "faust-table"}


class WorkerCrashed(RuntimeError):
    """A Warden worker exited on its own; `stage` is what it handled until then."""

    def __init__(self, reason: str, measured: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason, self.stage = reason, measured


def crash_reason(log_text: str) -> str:
    """The first ERROR/CRITICAL line of a worker log, without its timestamp prefix."""
    for line in log_text.splitlines():
        if "[ERROR]" in line or "[CRITICAL]" in line:
            return line.split("] ", 3)[-1].strip()[:300]
    return "exited (no ERROR line in its log)"


def parse_env(items: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in items if "=" in item)


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.extra_env: dict[str, str] = parse_env(args.worker_env)
        self.id = f"perf{time.strftime('%m%d%H%M%S')}{os.getpid() % 1000:03d}-"
        self.dir = REPO / ".run" / "perf" / self.id.rstrip("-")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.bootstrap = args.bootstrap
        self.redis_url = args.redis_url
        self.start_ms = int(time.time() * 1000) - 7 * DAY_MS
        self.accounts_seen = 0

    def workload(self) -> simulate.Population:
        a = self.args
        return simulate.plan(accounts=a.accounts or max(1000, a.events // 10), events=a.events,
                             seed=a.seed, start_ms=self.start_ms)

    async def publish_workload(self, prefix: str, partitions: int) -> tuple[int, float]:
        names = TopicNames(prefix)
        await create_topics(self.bootstrap, names.inputs, partitions)
        ids: set[str] = set()

        def counted() -> Any:
            for topic, value in self.workload().events():
                for field in ("account_id", "reporter_id", "reported_id"):
                    if field in value:
                        ids.add(value[field])
                yield topic, value

        n, seconds = await publish(self.bootstrap, prefix, counted())
        self.accounts_seen = len(ids)
        return n, seconds


def run_consumer(run: Run, name: str, prefix: str, total: int, partitions: int) -> dict[str, Any]:
    kind = CONSUMER_KIND[name]
    progress = run.dir / f"{name}.progress.json"
    log = (run.dir / f"{name}.log").open("ab")
    cmd = [sys.executable, str(REPO / "bench" / "perf_consumers.py"), kind,
           "--bootstrap", run.bootstrap, "--topics", ",".join(TopicNames(prefix).inputs),
           "--total", str(total), "--group", f"{prefix}{kind}", "--partitions", str(partitions),
           "--progress", str(progress), "--datadir", str(run.dir / f"{name}.data")]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    started = time.monotonic()
    state: dict[str, Any] = {"count": 0, "seconds": 0.0, "done": False}
    try:
        while True:
            if progress.exists():
                state = orjson.loads(progress.read_bytes())
            if state["done"]:
                return stage(state["timed"], state["seconds"])
            if proc.poll() is not None:
                raise RuntimeError(f"stage {name} exited with {proc.returncode}; see {log.name}")
            if time.monotonic() - started > run.args.cap_s:
                return stage(state.get("timed", 0), state["seconds"], partial=True)
            time.sleep(0.5)
    finally:
        stop(proc)
        log.close()


async def run_warden(run: Run, prefix: str, total: int, partitions: int, *, workers: int = 1,
                     profile_s: float = 0, cap_s: float | None = None) -> dict[str, Any]:
    """Stage D (or D2): Warden workers from the beginning until drained or the cap."""
    app_id = f"{prefix}warden{workers}"
    env = {**worker_env(run.bootstrap, run.redis_url, prefix, app_id, partitions), **run.extra_env}
    ws = [Worker(env, run.dir / f"{app_id}-{i}.log") for i in range(workers)]
    for w in ws:
        w.start()
    started = time.monotonic()
    first = last_apply = None
    applied = done = -1.0
    events = decisions = events0 = settled = settled0 = 0.0
    rss0: list[int] = []
    cpu0: list[float] = []
    last_metrics: list[dict[str, float]] = []
    timeline: list[tuple[float, int]] = []  # (s since the first event, inputs settled since)
    profiler: subprocess.Popen[bytes] | None = None
    partial = False
    crashed: str | None = None
    try:
        async with Lag(run.bootstrap, app_id, worker_topics(prefix, app_id), partitions) as lag:
            next_lag = 0.0
            while True:
                now = time.monotonic()
                metrics = [w.metrics() for w in ws]
                if all(metrics):  # a worker that is not answering keeps its last numbers
                    last_metrics = metrics
                    events = sum(m.get("warden_events_total", 0.0) for m in metrics)
                    settled = sum(m.get("warden_inputs_settled_total", 0.0) for m in metrics)
                    decisions = sum(m.get("warden_decisions_total", 0.0) for m in metrics)
                    done = sum(m.get("warden_projection_applied_total", 0.0) for m in metrics)
                else:
                    done = applied
                if first is None and events > 0:
                    first, events0, settled0 = now, events, settled
                    rss0 = [rss_bytes(w.pid) or 0 for w in ws]
                    cpu0 = [cpu_seconds(w.pid) or 0.0 for w in ws]
                if (profile_s > 0 and profiler is None and first is not None
                        and now - first >= run.args.profile_at_s):
                    profiler = start_profiler(run, ws[0].pid, profile_s)
                if done != applied:
                    applied, last_apply = done, now
                if first is not None and (not timeline or now - first - timeline[-1][0] >= 5):
                    timeline.append((round(now - first, 1), int(settled - settled0)))
                if first is not None and events >= total and now >= next_lag:
                    next_lag = now + 1.0
                    if await lag.behind() == 0:
                        break
                if first is not None and now - first > (cap_s or run.args.cap_s):
                    partial = True
                    break
                if first is None and now - started > 180:
                    raise RuntimeError(f"{app_id} consumed nothing in 180 s:\n{ws[0].log_tail()}")
                dead = [w for w in ws if not w.alive()]
                if dead and first is None:
                    raise RuntimeError(f"{app_id} exited:\n{dead[0].log_tail()}")
                if dead:
                    crashed = crash_reason(dead[0].log_path.read_text(errors="replace"))
                    partial = True
                    break
                await asyncio.sleep(0.2)
        rss1 = [rss_bytes(w.pid) or 0 for w in ws]
        cpu1 = [cpu_seconds(w.pid) or 0.0 for w in ws]
    finally:
        for w in ws:
            stop(w.proc)
        if profiler is not None:
            stop(profiler, grace_s=60)
    assert first is not None and last_apply is not None
    end = time.monotonic() if partial else last_apply
    note = f"{int(decisions):,} decisions, {int(applied):,} applied to Redis"
    # A capped run counts settled inputs (applied with their cross-key replies, or ignored,
    # or dead-lettered), not consumed ones: a stage can read far ahead of what it has done.
    # A rebalance re-reads what was handed over and not committed (two workers start apart,
    # so D2 has one): `warden_events_total` counts those twice; the inputs are `total`.
    handled = settled - settled0 if partial else min(events, total) - events0
    if partial:
        note += f"; {int(events - events0):,} consumed"
    result = stage(int(handled), end - first, partial=partial, note=note)
    result["rss_start"], result["rss_end"] = sum(rss0), sum(rss1)
    # the workers' own CPU time per event handled: steadier than the wall-clock rate here
    result["cpu_s"] = round(sum(cpu1) - sum(cpu0), 2)
    result["cpu_us_per_event"] = round(1e6 * result["cpu_s"] / max(1, int(handled)), 1)
    result["env"] = dict(run.extra_env)
    result["timeline"] = timeline
    # what the event-time waits did: inputs applied out of replay's order, alignment waits
    # and device requests' hop waits that ran out
    for field, metric in (("out_of_order", "warden_inputs_out_of_order_total"),
                          ("align_timeouts", "warden_alignment_timeouts_total"),
                          ("hop_timeouts", "warden_device_request_timeouts_total"),
                          ("reply_pauses", "warden_input_pauses_total")):
        result[field] = sum(m.get(metric, 0.0) for m in last_metrics)
    if crashed:
        result["crashed"] = crashed
        raise WorkerCrashed(crashed, result)
    return result


def start_profiler(run: Run, pid: int, seconds: float) -> subprocess.Popen[bytes]:
    spy = Path(sys.executable).with_name("py-spy")
    out = run.dir / "profile-D.txt"
    return subprocess.Popen([str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds)),
                             "--rate", "100", "--nonblocking", "--format", "raw", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


_LINE = re.compile(r" \(([^()]*?)(?::\d+)?\)$")


def summarize_profile(path: Path, top: int = 40) -> dict[str, Any]:
    """py-spy raw (collapsed) stacks: share of samples per function, self and inclusive."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_LINE.sub(lambda m: f" ({short(m.group(1))})", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n

    def share(c: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * n / total, 1)) for f, n in c.most_common(top)]

    return {"samples": total, "self": share(own), "inclusive": share(incl)}


def short(path: str) -> str:
    for marker in ("site-packages/", str(REPO) + "/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def python_loop_s(n: int = 10_000_000) -> float:
    """Seconds a pure-Python loop of `n` additions takes here (best of three): how fast this
    shared machine runs Python right now, so runs on different days can be compared."""
    best = float("inf")
    for _ in range(3):
        started, total = time.perf_counter(), 0
        for i in range(n // 3):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 3, 3)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(args)
    skip = set(args.skip)
    prefix, p = run.id, args.partitions
    result: dict[str, Any] = {"run": {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "events": 0,
        "partitions": p, "seed": args.seed, "cpus": os.cpu_count(), "id": run.id,
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True).stdout.strip()}, "throughput": {}}
    say = print
    result["run"]["python_loop_s"] = {"start": python_loop_s()}
    try:
        say(f"[perf] publishing {args.events:,} events to {prefix}* ({p} partitions)", flush=True)
        total, seconds = await run.publish_workload(prefix, p)
        result["run"]["worker_env"] = run.extra_env
        result["run"].update(events=total, accounts=run.accounts_seen,
                             publish_per_s=round(total / seconds))
        say(f"[perf] published {total:,} in {seconds:.1f} s; {run.accounts_seen:,} accounts")
        for name in ("A", "B", "Bw", "C"):
            if name in skip:
                continue
            say(f"[perf] stage {name}: {CONSUMER_KIND[name]}", flush=True)
            result["throughput"][name] = run_consumer(run, name, prefix, total, p)
            say(f"[perf]   {result['throughput'][name]}", flush=True)
        if "D" not in skip:
            say(f"[perf] stage D: Warden worker {run.extra_env or ''}", flush=True)
            try:
                d = await run_warden(run, prefix, total, p, profile_s=args.profile_s)
            except WorkerCrashed as exc:
                result["throughput"]["D_crashed"] = exc.stage
                say(f"[perf]   CRASHED: {exc.stage}", flush=True)
                if not args.fallback_env:
                    raise
                run.extra_env.update(parse_env(args.fallback_env))
                say(f"[perf] stage D again with {run.extra_env} (also for every later worker),"
                    f" on a fresh copy of the workload", flush=True)
                await run.publish_workload(f"{prefix}b-", p)  # account-decisions is per prefix
                d = await run_warden(run, f"{prefix}b-", total, p, profile_s=args.profile_s)
            result["throughput"]["D"] = d
            say(f"[perf]   {d}", flush=True)
            if not d["partial"] and d["rss_end"]:
                result["memory"] = {"tracked_accounts": run.accounts_seen,
                                    "bytes_per_tracked_account": round(
                                        (d["rss_end"] - d["rss_start"]) / run.accounts_seen, 1)}
            profile = run.dir / "profile-D.txt"
            if args.profile_s and profile.exists():
                result["profile"] = {"seconds": args.profile_s, **summarize_profile(profile)}
        if args.scaling:
            say(f"[perf] stage D2: 2 workers, {2 * p} partitions", flush=True)
            await run.publish_workload(f"{prefix}x2-", 2 * p)
            result["throughput"]["D2"] = await run_warden(run, f"{prefix}x2-", total, 2 * p,
                                                          workers=2, cap_s=args.scaling_cap_s)
            say(f"[perf]   {result['throughput']['D2']}", flush=True)
        if "latency" not in skip:
            rates = [args.rate]
            d_rate = result["throughput"].get("D", {}).get("events_per_s")
            if args.sustainable and d_rate and d_rate < args.rate:
                rates.append(max(100.0, round(d_rate * 0.5, -2)))
            result["latency"] = []
            for rate in rates:
                say(f"[perf] latency at {rate:,.0f} events/s for {args.latency_seconds} s",
                    flush=True)
                phase = await latency_phase(
                    bootstrap=run.bootstrap, redis_url=run.redis_url,
                    prefix=f"{prefix}lat{rate:.0f}-",
                    partitions=p, rate=rate, seconds=args.latency_seconds, seed=args.seed + 1,
                    extra_env=run.extra_env,
                    start_ms=int(time.time() * 1000) - 7 * DAY_MS, log_dir=run.dir)
                result["latency"].append(phase)
                say(f"[perf]   {phase}", flush=True)
        if "memory" not in skip:
            say(f"[perf] idle memory: {args.idle_accounts:,} accounts, then as many more",
                flush=True)
            mem = await idle_memory(bootstrap=run.bootstrap, redis_url=run.redis_url,
                                    prefix=f"{prefix}idle-", partitions=p,
                                    accounts=args.idle_accounts, log_dir=run.dir,
                                    extra_env=run.extra_env,
                                    cap_s=args.cap_s)
            result.setdefault("memory", {}).update(mem)
            say(f"[perf]   {mem}", flush=True)
    except Exception as exc:  # keep what was measured; the table says what failed
        result["error"] = f"{type(exc).__name__}: {exc}"[:2000]
        say(f"[perf] FAILED: {result['error']}", flush=True)
    finally:
        result["run"]["python_loop_s"]["end"] = python_loop_s()
        if not args.keep:
            gone = await delete_topics(run.bootstrap, prefix)
            keys = await redis_cleanup(run.redis_url, [prefix])
            say(f"[perf] cleaned up {len(gone)} topics and {keys} Redis keys of {prefix}*")
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--accounts", type=int, default=0, help="default: events / 10")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--cap-s", type=float, default=900.0, help="time cap per stage")
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--no-sustainable", dest="sustainable", action="store_false",
                        help="skip the second latency phase at half of D's rate (when D < rate)")
    parser.add_argument("--idle-accounts", type=int, default=100_000)
    parser.add_argument("--scaling", action="store_true", help="also D2: 2 workers, 2x partitions")
    parser.add_argument("--scaling-cap-s", type=float, default=300.0,
                        help="time cap of D2 (a capped stage reports its partial rate)")
    parser.add_argument("--profile-s", type=float, default=0.0,
                        help="py-spy stage D's worker for this many seconds")
    parser.add_argument("--profile-at-s", type=float, default=0.0,
                        help="start the profile this long after D's first event")
    parser.add_argument("--worker-env", action="append", default=[], metavar="VAR=VALUE",
                        help="extra environment of every Warden worker (repeatable)")
    parser.add_argument("--fallback-env", action="append", default=None, metavar="VAR=VALUE",
                        help="if stage D's worker crashes, record it and rerun D and every later "
                             "worker with this (default: WARDEN_ALIGN_MS=0; 'none' to stop)")
    parser.add_argument("--skip", type=lambda s: [x for x in s.split(",") if x], default=[],
                        help=f"comma-separated of {','.join(STAGES)}")
    parser.add_argument("--out", type=Path, default=None,
                        help="default: bench/results/perf-<date>.json, or perf-<date>-<HHMM>.json "
                             "when a run of the day is there already")
    parser.add_argument("--keep", action="store_true", help="keep this run's topics and Redis keys")
    parser.add_argument("--bootstrap", default=os.environ.get("WARDEN_KAFKA_BOOTSTRAP",
                                                              "127.0.0.1:9092"))
    parser.add_argument("--redis-url", default=os.environ.get("WARDEN_REDIS_URL",
                                                              "redis://127.0.0.1:6379/0"))
    args = parser.parse_args(argv)
    if args.fallback_env is None:
        args.fallback_env = ["WARDEN_ALIGN_MS=0"]
    elif args.fallback_env == ["none"]:
        args.fallback_env = []
    unknown = set(args.skip) - set(STAGES)
    if unknown:
        parser.error(f"--skip: unknown {', '.join(sorted(unknown))}")
    if args.profile_s and not Path(sys.executable).with_name("py-spy").exists():
        parser.error("--profile-s needs py-spy next to this Python (make bootstrap installs it"
                     " with the dev extras)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(main_async(args))
    print()
    print(format_table(result))
    profile = result.get("profile")
    if profile:
        print(f"\nstage D profile (py-spy, {profile['samples']:,} samples), top self time:")
        for frame, pct in profile["self"][:10]:
            print(f"  {pct:5.1f}%  {frame}")
    out = args.out or results_path(REPO / "bench" / "results", time.localtime())
    write_json(result, out)
    print(f"\nwrote {out}")
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
