"""Soak (issue #6, item 5): steady paced load on a real worker for WARDEN_SOAK_SECONDS (120 s in
`make test`; `make soak` runs the full 600 s), with event time compressed so that every window,
dedupe horizon and lift turns over many times: the simulator's mix spread over DAYS event days.

Checked, sampling every SAMPLE_S: the worker's resident memory (VmRSS of its process) stops
growing once its state is warm (bounded state: windows prune, dedupe ids expire after 7 days
of event time, idle accounts are swept), `warden_consumer_lag` stays bounded, the worker drains
at the end, and its log has no ERROR line and no traceback.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
import uuid
from pathlib import Path

from drain import LAST_LAG, drained, metric_samples, metrics_text
from harness import produce, running_worker, wait_for

from streams import simulate

SECONDS = float(os.environ.get("WARDEN_SOAK_SECONDS", "120"))
RATE = float(os.environ.get("WARDEN_SOAK_RATE", "200"))  # events/s
ACCOUNTS = 1500
DAYS = 400  # event time covered by the run, whatever its length: > 2x the 180 d device horizon
SAMPLE_S = 5.0
PARTITIONS = 2
POLICY = """
[lifecycle]
quiet_base_ms = 21600000   # 6 h: restrictions lift and repeat within the run
"""
# Bounds (README "Reliability"). RSS: the second half's growth must stay under
# max(RSS_GROWTH_MIB, RSS_GROWTH_SHARE x RSS at half time). State that grew with the number of
# events (a window, dedupe set or table entry per event never dropped) would show as steady
# growth over the second half, 60,000 events at the full soak's defaults; a few MiB of allocator
# and buffer noise is allowed.
RSS_GROWTH_MIB = 16.0
RSS_GROWTH_SHARE = 0.10
LAG_BOUND = 20 * RATE  # 20 s of traffic: the worker keeps up, with room for a shared 2-core box


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def consumer_lag(text: str) -> float:
    return sum(metric_samples(text, "warden_consumer_lag").values())


def test_a_steady_soak_keeps_memory_flat_lag_bounded_and_the_log_clean(tmp_path, kafka_bootstrap,
                                                                      redis_url):
    uid = uuid.uuid4().hex[:10]
    prefix, app_id = f"{uid}-", f"w{uid}"
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    env = {"WARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap, "WARDEN_REDIS_URL": redis_url,
           "WARDEN_TOPIC_PREFIX": prefix, "WARDEN_APP_ID": app_id, "WARDEN_REDIS_PREFIX": app_id,
           "WARDEN_PARTITIONS": str(PARTITIONS), "WARDEN_POLICY": str(policy),
           "WARDEN_IDLE_ADVANCE": "false"}
    events = int(SECONDS * RATE)
    workload = list(simulate.generate(accounts=ACCOUNTS, events=events, seed=41, days=DAYS))
    samples: list[tuple[float, float, float]] = []  # (s since start, RSS MiB, consumer lag)
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            asyncio.run(produce(kafka_bootstrap, prefix, workload, rate=RATE))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    with running_worker(tmp_path, env) as worker:
        assert worker.proc is not None
        pid = worker.proc.pid
        producer = threading.Thread(target=publish, daemon=True)
        started = time.monotonic()
        producer.start()
        next_sample = started
        while producer.is_alive():
            now = time.monotonic()
            if now >= next_sample:
                samples.append((now - started, rss_mib(pid), consumer_lag(metrics_text(worker))))
                next_sample += SAMPLE_S
            producer.join(timeout=max(0.0, min(1.0, next_sample - time.monotonic())))
        elapsed = time.monotonic() - started
        assert not errors, errors
        try:
            wait_for(lambda: drained(kafka_bootstrap, prefix, app_id, PARTITIONS), timeout=120,
                     interval=1.0, what="the worker caught up after the soak")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; still behind: {LAST_LAG}") from None
        assert worker.proc.poll() is None and worker.healthy()
        log = worker.log_path.read_text(errors="replace")

    half = [s for s in samples if s[0] >= elapsed / 2]
    assert len(half) >= 6, f"too few samples in the second half: {samples}"
    mid = statistics.median(rss for _, rss, _ in half[:3])
    end = statistics.median(rss for _, rss, _ in half[-3:])
    peak = max(rss for _, rss, _ in samples)
    lag_max = max(lag for _, _, lag in samples)
    print(f"soak: {events} events in {elapsed:.0f} s ({events / elapsed:.0f}/s, {DAYS} event "
          f"days); RSS start {samples[0][1]:.1f} MiB, half {mid:.1f}, end {end:.1f}, peak "
          f"{peak:.1f}; consumer lag max {lag_max:.0f}")
    print("samples (s, RSS MiB, lag):",
          " ".join(f"{t:.0f}:{rss:.1f}:{lag:.0f}" for t, rss, lag in samples))
    growth_bound = max(RSS_GROWTH_MIB, RSS_GROWTH_SHARE * mid)
    assert end - mid <= growth_bound, \
        f"RSS grew {end - mid:.1f} MiB over the second half (bound {growth_bound:.1f} MiB)"
    assert lag_max <= LAG_BOUND, f"consumer lag reached {lag_max:.0f} (bound {LAG_BOUND:.0f})"
    bad = [line for line in log.splitlines() if "[ERROR]" in line or "Traceback" in line]
    assert not bad, "\n".join(bad[:20])
