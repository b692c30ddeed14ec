"""The live side of bench/perf.py: publish workloads, run Warden workers, watch them drain.

Everything here starts processes or talks to the shared Kafka and Redis; every process it
starts is stopped by `stop()` (SIGTERM to its own session, SIGKILL after a grace period).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.producer import key_for
from streams.topics import TopicNames

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a process (Linux), None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used (Linux), None once it is gone.

    On a machine shared with the broker and Redis, wall-clock rates swing by a fifth
    between identical runs; the worker's own CPU time per event moves far less."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- topics ------------------------------------------------------------------------------
async def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        present = set(await admin.list_topics())
        missing = [n for n in names if n not in present]
        if missing:
            await admin.create_topics([NewTopic(n, partitions, 1) for n in missing])
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic whose name starts with this run's unique prefix."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        ours = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if ours:
            await admin.delete_topics(ours)
        return ours
    finally:
        await admin.close()


async def publish(bootstrap: str, prefix: str, inputs: Iterable[tuple[str, dict[str, Any]]],
                  *, rate: float | None = None,
                  sent_at: dict[tuple[str, int], float] | None = None) -> tuple[int, float]:
    """Send (canonical topic, value) keyed as the spec says; (count, seconds).

    Without `rate`: as fast as the batching producer goes. With `rate`: paced in 10-event
    steps, and `sent_at[(key, ts)]` records each event's wall-clock send time.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                linger_ms=5 if rate else 50,
                                max_batch_size=256 * 1024 if not rate else 16384)
    await producer.start()
    names = TopicNames(prefix)
    dumps, now = orjson.dumps, time.time
    count = 0
    started = time.monotonic()
    try:
        for topic, value in inputs:
            key = key_for(topic, value)
            if sent_at is not None:
                sent_at[(key.decode() if key else "", value["ts"])] = now()
            await producer.send(names.input(topic), dumps(value), key=key)
            count += 1
            if rate and count % 10 == 0:
                ahead = count / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing
        await producer.flush()
    finally:
        await producer.stop()
    return count, time.monotonic() - started


# --- workers -----------------------------------------------------------------------------
@dataclass
class Worker:
    """One `python -m streams.cli worker` process with its own HTTP port and data dir."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **self.env, "WARDEN_WEB_PORT": str(self.port),
               "WARDEN_DATA_DIR": str(self.log_path.with_suffix(".data"))}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=REPO,
                                     env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def metrics(self) -> dict[str, float]:
        """Warden's counters summed over their labels (empty while the server is not up)."""
        status, body = self.get("/metrics")
        if status != 200:
            return {}
        out: dict[str, float] = {}
        for line in body.decode(errors="replace").splitlines():
            if not line.startswith("warden_"):
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            with contextlib.suppress(ValueError):
                out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        return out

    def labelled(self, name: str) -> dict[str, float]:
        """A Warden metric's samples per label set ("name=value,..." as /metrics lists them)."""
        status, body = self.get("/metrics")
        if status != 200:
            return {}
        out: dict[str, float] = {}
        for line in body.decode(errors="replace").splitlines():
            if line.startswith(name + "{"):
                labels = line[len(name) + 1:].split("}", 1)[0].replace('"', "")
                with contextlib.suppress(ValueError):
                    out[labels] = float(line.rsplit(" ", 1)[1])
        return out

    def histogram_means(self, name: str) -> dict[str, float]:
        """A Warden histogram's mean per label set (as `labelled` keys them), from its `_sum`
        and `_count` samples."""
        sums, counts = self.labelled(name + "_sum"), self.labelled(name + "_count")
        return {key: sums[key] / n for key, n in counts.items() if n and key in sums}

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def stop(proc: subprocess.Popen[bytes] | None, grace_s: float = 30) -> None:
    """SIGTERM the process's session, SIGKILL it after `grace_s`."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


async def wait_healthy(workers: list[Worker], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not all(w.get("/health")[0] == 200 for w in workers):
        for w in workers:
            if not w.alive():
                raise RuntimeError(f"worker exited:\n{w.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"workers not healthy after {timeout} s:\n{workers[0].log_tail()}")
        await asyncio.sleep(0.5)


class Lag:
    """Messages a consumer group has not committed on some topics (end offset - committed)."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], partitions: int) -> None:
        self.bootstrap, self.group = bootstrap, group
        self.tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                         enable_auto_commit=False)

    async def __aenter__(self) -> Lag:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.consumer.stop()
        except asyncio.CancelledError:
            # aiokafka 0.14 can re-raise its own cancelled commit-reset task on stop()
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        await self.admin.close()

    async def behind(self) -> int:
        committed = await self.admin.list_consumer_group_offsets(self.group)
        ends = await self.consumer.end_offsets(self.tps)
        lag = 0
        for tp in self.tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag += max(0, ends[tp] - done)
        return lag


def worker_topics(prefix: str, app_id: str) -> list[str]:
    """What a drained worker group has committed to the end (tests/integration/drain.py)."""
    names = TopicNames(prefix, app_id)
    return [*names.account_sources, names.device_inbox, names.decisions]


def worker_env(bootstrap: str, redis_url: str, prefix: str, app_id: str,
               partitions: int) -> dict[str, str]:
    return {"WARDEN_KAFKA_BOOTSTRAP": bootstrap, "WARDEN_REDIS_URL": redis_url,
            "WARDEN_TOPIC_PREFIX": prefix, "WARDEN_APP_ID": app_id,
            "WARDEN_REDIS_PREFIX": app_id, "WARDEN_PARTITIONS": str(partitions),
            "WARDEN_LOG_LEVEL": "warning"}


async def redis_cleanup(redis_url: str, prefixes: Iterable[str]) -> int:
    """Delete this run's read-model keys (each prefix is unique to the run)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    deleted = 0
    try:
        for prefix in prefixes:
            batch: list[bytes] = []
            async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += await redis.delete(*batch)
                    batch = []
            if batch:
                deleted += await redis.delete(*batch)
    finally:
        await redis.aclose()
    return deleted
