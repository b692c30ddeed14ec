"""Latency and memory phases of bench/perf.py, each against its own fresh Warden worker.

Latency: a seeded workload is published at a fixed rate to a fresh prefix while a probe polls
Redis. Which decisions to expect, and which input causes each, comes from replaying the same
workload offline (`detectors.engine`, what `warden replay` runs): a decision is timed when its
`at` equals the event time of an input keyed by the same account, so lifts fired by the clock
are left out. Its latency is the wall-clock time from the producer's `send()` of that input to
the first probe poll (every 10 ms) that sees the account's `seq` in Redis at or past the
decision's `seq`. Decisions that never show up within the drain limit count as `missing`.
The worker's `warden_record_wait_seconds` says where records queued on the way: per stage
and source, the mean age of each batch's oldest record when the stage took the batch.
Each sample is also counted under its cause, the input's topic and the decision's first
trigger (`by_cause`): a decision that needs the device stage or a reporter's weight crosses
two more stages than one an account's own inputs decide.

Idle memory: the worker's VmRSS before and after N accounts each send one device signal from
their own device (state: a device history, the device's entry, one dedupe id; no windows, no
restriction), divided by N; then again for N more accounts. The first N also pay for what a
worker grows once, whatever the number of accounts (the allocator keeps the peak of the
first backlog's buffers); the next N measure what each further account costs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from perf_live import Lag, Worker, publish, rss_bytes, stop, wait_healthy, worker_env, worker_topics
from perf_report import latency_summary
from redis.asyncio import Redis

from detectors.engine import Engine
from detectors.events import Rejected, decode_object
from projections.keys import Keys
from streams import simulate
from streams.producer import key_for

POLL_S = 0.01


def expected_decisions(inputs: list[tuple[str, dict[str, Any]]]
                       ) -> list[tuple[str, int, int, str]]:
    """(account_id, seq, at, cause) of replay's decisions that an input keyed by that account
    at that event time caused, in event-time order; the cause is that input's topic and the
    decision's first trigger (or its type), e.g. `device-signals/tainted_device`."""
    engine = Engine()
    causes: dict[tuple[str, int], str] = {}
    out = []
    for topic, value in inputs:
        key = key_for(topic, value)
        causes.setdefault((key.decode() if key else "", value["ts"]), topic)
        event = decode_object(topic, value)
        if isinstance(event, Rejected):
            continue
        for d in engine.process(event).decisions:
            cause = causes.get((d.account_id, d.at))
            if cause is not None:
                why = d.triggers[0] if d.triggers else d.type
                out.append((d.account_id, d.seq, d.at, f"{cause}/{why}"))
    out.sort(key=lambda e: e[2])
    return out


def by_cause(samples: list[tuple[str, float]]) -> dict[str, dict[str, Any]]:
    """Latency summary per cause, most samples first."""
    grouped: dict[str, list[float]] = {}
    for cause, ms in samples:
        grouped.setdefault(cause, []).append(ms)
    return {cause: latency_summary(ms)
            for cause, ms in sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0]))}


class Probe:
    """Polls Redis for the expected decisions whose input has been sent."""

    def __init__(self, redis: Redis, prefix: str, expected: list[tuple[str, int, int, str]],
                 sent_at: dict[tuple[str, int], float]) -> None:
        self.redis, self.prefix, self.expected, self.sent_at = redis, prefix, expected, sent_at
        self.next = 0
        self.outstanding: dict[str, list[tuple[int, float, str]]] = {}
        self.samples: list[tuple[str, float]] = []  # (cause, ms) of each decision seen
        self.keys: Keys | None = None

    @property
    def open(self) -> int:
        return sum(map(len, self.outstanding.values())) + len(self.expected) - self.next

    async def poll(self) -> None:
        while self.next < len(self.expected):
            account, seq, at, cause = self.expected[self.next]
            sent = self.sent_at.get((account, at))
            if sent is None:
                break
            self.outstanding.setdefault(account, []).append((seq, sent, cause))
            self.next += 1
        if not self.outstanding:
            return
        if self.keys is None:
            ns = await self.redis.get(f"{self.prefix}:current")
            if ns is None:
                return
            self.keys = Keys(self.prefix, ns.decode())
        accounts = list(self.outstanding)
        pipe = self.redis.pipeline(transaction=False)
        for account in accounts:
            pipe.hget(self.keys.acct(account), "seq")
        seqs = await pipe.execute()
        now = time.time()
        for account, raw in zip(accounts, seqs, strict=True):
            if raw is None:
                continue
            stored = int(raw)
            waiting = self.outstanding[account]
            seen = [s for s in waiting if s[0] <= stored]
            self.samples.extend((cause, (now - sent) * 1000) for _, sent, cause in seen)
            rest = [s for s in waiting if s[0] > stored]
            if rest:
                self.outstanding[account] = rest
            else:
                del self.outstanding[account]


def _wait_entries(waits: dict[str, float]) -> list[tuple[str, float]]:
    """("stage <- source", mean ms) from `Worker.histogram_means` of the record waits."""
    out = []
    for key, seconds in waits.items():
        labels = dict(part.split("=", 1) for part in key.split(",") if "=" in part)
        out.append((f"{labels.get('stage')} <- {labels.get('source')}", round(seconds * 1000, 1)))
    return out


async def latency_phase(*, bootstrap: str, redis_url: str, prefix: str, partitions: int,
                        rate: float, seconds: float, seed: int, start_ms: int, log_dir: Any,
                        drain_s: float = 120, extra_env: dict[str, str] | None = None
                        ) -> dict[str, Any]:
    events = int(rate * seconds)
    accounts = max(1000, events // 10)
    pop = simulate.plan(accounts=accounts, events=events, seed=seed, start_ms=start_ms)
    inputs = list(pop.events())
    expected = expected_decisions(inputs)
    app_id = f"{prefix}warden"
    worker = Worker({**worker_env(bootstrap, redis_url, prefix, app_id, partitions),
                     **(extra_env or {})}, log_dir / f"{app_id}.log")
    worker.start()
    redis = Redis.from_url(redis_url)
    sent_at: dict[tuple[str, int], float] = {}
    probe = Probe(redis, app_id, expected, sent_at)
    try:
        await wait_healthy([worker])
        consumed0 = worker.metrics().get("warden_events_total", 0.0)
        producing = asyncio.create_task(publish(bootstrap, prefix, inputs, rate=rate,
                                                sent_at=sent_at))
        while not producing.done():
            await probe.poll()
            await asyncio.sleep(POLL_S)
        sent, offer_s = producing.result()
        consumed = worker.metrics().get("warden_events_total", 0.0) - consumed0
        deadline = time.monotonic() + drain_s
        async with Lag(bootstrap, app_id, worker_topics(prefix, app_id), partitions) as lag:
            next_lag = 0.0
            while probe.open and time.monotonic() < deadline:
                await probe.poll()
                if time.monotonic() > next_lag:  # drained with decisions still unseen: give up
                    next_lag = time.monotonic() + 2
                    if await lag.behind() == 0:
                        await probe.poll()
                        break
                await asyncio.sleep(POLL_S)
        drained_after = time.monotonic() - deadline + drain_s
        final = worker.metrics()
        waits = worker.histogram_means("warden_record_wait_seconds")
        late = {k.split("=", 1)[1]: v
                for k, v in worker.labelled("warden_inputs_out_of_order_total").items() if v}
    finally:
        await redis.aclose()

        stop(worker.proc)
    return {"rate": rate, "seconds": seconds, "events": sent, "accounts": accounts,
            "offered_per_s": round(sent / offer_s, 1),
            "consumed_per_s": round(consumed / offer_s, 1),
            "kept_up": consumed >= 0.95 * sent, "drain_after_offer_s": round(drained_after, 1),
            "expected": len(expected), "missing": probe.open,
            # what the wait bought: inputs applied out of replay's order, and waits that ran out
            "out_of_order": final.get("warden_inputs_out_of_order_total"),
            "align_timeouts": final.get("warden_alignment_timeouts_total"),
            "out_of_order_by_topic": late,
            # where records queued: the mean age of each batch's oldest record, by stage/source
            "record_wait_ms": dict(sorted(_wait_entries(waits))),
            **latency_summary([ms for _, ms in probe.samples]), "by_cause": by_cause(probe.samples)}


def idle_inputs(n: int, *, end_ms: int) -> list[tuple[str, dict[str, Any]]]:
    start = end_ms - n * 10
    return [("device-signals", {"event_id": f"idle-{i}", "ts": start + i * 10,
                                "account_id": f"idle-{i:07d}", "device_id": f"idle-dev-{i:07d}"})
            for i in range(n)]


async def idle_memory(*, bootstrap: str, redis_url: str, prefix: str, partitions: int,
                      accounts: int, log_dir: Any, cap_s: float = 600,
                      extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """RSS growth over `accounts` idle accounts, then over as many more (the module docstring).
    `bytes_per_idle_account` is the first round's (as reported before the second existed),
    `bytes_per_further_idle_account` the second's."""
    app_id = f"{prefix}warden"
    worker = Worker({**worker_env(bootstrap, redis_url, prefix, app_id, partitions),
                     **(extra_env or {})}, log_dir / f"{app_id}.log")
    worker.start()
    rss: list[int] = []
    handled: list[int] = []
    partial = False
    try:
        await wait_healthy([worker])
        await asyncio.sleep(3)
        rss.append(rss_bytes(worker.pid) or 0)
        handled.append(0)
        deadline = time.monotonic() + cap_s
        inputs = idle_inputs(2 * accounts, end_ms=int(time.time() * 1000))
        for half in (inputs[:accounts], inputs[accounts:]):  # the second after the first in time
            await publish(bootstrap, prefix, half)
            async with Lag(bootstrap, app_id, worker_topics(prefix, app_id), partitions) as lag:
                while await lag.behind():
                    if time.monotonic() > deadline:
                        partial = True
                        break
                    await asyncio.sleep(1)
            await asyncio.sleep(3)
            rss.append(rss_bytes(worker.pid) or 0)
            handled.append(int(worker.metrics().get("warden_events_total", 0)))
            if partial:  # what the capped round handled, and no further round
                break
    finally:
        stop(worker.proc)

    def per_account(i: int) -> float | None:
        if i >= len(rss):
            return None
        return round((rss[i] - rss[i - 1]) / max(1, handled[i] - handled[i - 1]), 1)

    return {"idle_accounts": accounts, "idle_events_handled": handled[-1],
            "idle_partial": partial, "idle_rss": rss,
            "idle_rss_before": rss[0], "idle_rss_after": rss[1] if len(rss) > 1 else None,
            "bytes_per_idle_account": per_account(1),
            "bytes_per_further_idle_account": per_account(2)}
