"""Helpers for tests against the real Kafka and Redis: worker processes, produce, consume.

Every wait is a condition polled against a deadline, never a bare sleep.
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
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], *, timeout: float, interval: float = 0.2,
             what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class WorkerProcess:
    env: dict[str, str]
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    stalls: int = 0  # restarts because /health reported the worker stalled

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"], cwd=REPO, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def http(self, path: str, *, method: str = "GET", body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else orjson.dumps(body))
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                raw = response.read()
                status = response.status
                self.last_headers = dict(response.headers)
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
            self.last_headers = dict(exc.headers)
        try:
            return status, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return status, raw

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return self.http("/health")[0] == 200
        except OSError:
            return False

    def wait_healthy(self, timeout: float = 90) -> None:
        try:
            wait_for(self.healthy, timeout=timeout, interval=0.5, what="worker /health 200")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`: a test never leaves
        a worker behind (one stopped during a rebalance's recovery can take Faust's 60 s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"worker {self.proc.pid} still running {timeout:.0f} s after SIGTERM: SIGKILL")
            self.kill(signal.SIGKILL)

    def dump_tasks(self) -> str:
        """What a stalled worker is doing: py-spy's dump of its threads when py-spy is
        installed, and mode's SIGUSR1 task dump in the worker log."""
        if self.proc is None or self.proc.poll() is not None:
            return ""
        out = ""
        spy = Path(sys.executable).with_name("py-spy")
        if spy.exists():
            try:
                out = subprocess.run([str(spy), "dump", "--pid", str(self.proc.pid)],
                                     capture_output=True, text=True, timeout=30).stdout
            except (OSError, subprocess.SubprocessError) as exc:
                out = f"py-spy: {exc}"
        os.kill(self.proc.pid, signal.SIGUSR1)
        time.sleep(2)
        return out

    def log_tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@contextlib.contextmanager
def running_worker(tmp_path: Path, env: dict[str, str]) -> Iterator[WorkerProcess]:
    port = free_port()
    full_env = {**os.environ, **env, "WARDEN_WEB_PORT": str(port),
                "WARDEN_DATA_DIR": str(tmp_path / "worker-data")}
    worker = WorkerProcess(full_env, tmp_path / "worker.log", port)
    worker.start()
    try:
        worker.wait_healthy()
        yield worker
    finally:
        worker.stop()


@dataclass
class Names:
    prefix: str

    def topic(self, canonical: str) -> str:
        return f"{self.prefix}{canonical}"


async def produce(bootstrap: str, prefix: str, inputs: Iterable[tuple[str, dict[str, Any]]], *,
                  rate: float | None = None, chunk: int = 100) -> int:
    """Send (canonical topic, value) inputs keyed as the spec says, in order; returns how many.

    With `rate` (events/s), inputs go out in flushed chunks at that pace, as a
    live service publishes them, so the worker sees them in event-time order.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    count = 0
    started = time.monotonic()
    try:
        for topic, value in inputs:
            key = value.get("reported_id") if topic == "message-reports" else value.get("account_id")
            await producer.send(f"{prefix}{topic}", orjson.dumps(value),
                                key=None if key is None else str(key).encode())
            count += 1
            if rate and count % chunk == 0:
                await producer.flush()
                ahead = count / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)  # pacing, not synchronisation
        await producer.flush()
    finally:
        await producer.stop()
    return count


async def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    """Topics with `partitions` partitions, for inputs published before a worker creates them
    (the broker would create them with its default of one)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def produce_raw(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


@dataclass
class TopicReader:
    """Reads a whole topic from the beginning, accumulating values across calls."""

    bootstrap: str
    topic: str
    partitions: int
    values: list[bytes] = field(default_factory=list)

    async def read_until(self, done: Callable[[list[bytes]], bool], *, timeout: float,
                         quiet_s: float | None = None) -> list[bytes]:
        """Read from the beginning until `done(values)`; with `quiet_s`, also stop (without
        error) once nothing new arrived for that long, so a mismatch shows as a diff."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        try:
            deadline = time.monotonic() + timeout
            partitions = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            self.values = []
            last_new = time.monotonic()
            while not done(self.values):
                if quiet_s is not None and self.values and time.monotonic() - last_new > quiet_s:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"timed out after {timeout}s reading {self.topic}: {len(self.values)} so far")
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    self.values.extend(r.value for r in records)
                    last_new = time.monotonic()
            return self.values
        finally:
            await consumer.stop()


def per_account(decisions: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for d in decisions:
        by.setdefault(d["account_id"], []).append(d)
    for items in by.values():
        items.sort(key=lambda d: d["seq"])
    return by


def replay(inputs: Iterable[tuple[str, dict[str, Any]]], *, policy_path: str | None = None,
           until: int | None = None) -> list[dict[str, Any]]:
    from detectors.config import DEFAULT_POLICY, load_policy
    from detectors.engine import Engine
    from detectors.events import Rejected, decode_object

    engine = Engine(load_policy(policy_path) if policy_path else DEFAULT_POLICY)
    out = []
    for topic, value in inputs:
        event = decode_object(topic, value)
        if isinstance(event, Rejected):
            continue
        out.extend(d.to_dict() for d in engine.process(event).decisions)
    if until is not None:
        out.extend(d.to_dict() for d in engine.advance(until))
    return out


# Triggers that read other accounts' state through another partition: device triggers read
# other accounts' statuses at the device stage, report_flood weighs each report with its
# reporter's credibility and status on the reporter's partition (README "Time").
CROSS_KEY = frozenset({"tainted_device", "ban_evasion", "report_flood"})
COMPARED = ("type", "triggers", "level", "lift_at", "at", "scopes", "reason")


def _first_difference(account: str, actual: list[tuple], wanted: list[tuple]) -> str:
    """Which decision of the account differs first, both sides, for the failure message."""
    for seq, (a, w) in enumerate(zip(actual, wanted), start=1):
        if a != w:
            return (f"{account} seq {seq} differs ({', '.join(COMPARED)}):\n"
                    f"  live:   {a}\n  replay: {w}")
    return f"{account}: live has {len(actual)} decisions, replay {len(wanted)}"


@dataclass
class ReplayComparison:
    exact: int              # accounts without cross-key triggers, all identical to replay
    cross_key: int          # accounts with a cross-key trigger (live or replay)
    differing_cross_key: int
    differences: list[str] = field(default_factory=list)  # the first one of each such account


def compare_with_replay(decisions: list[dict[str, Any]],
                        expected: list[dict[str, Any]]) -> ReplayComparison:
    """The live rule: exactly replay's decisions for every account untouched by a CROSS_KEY
    trigger (asserted here, naming the account); the others are counted, for a bound."""
    got, want = per_account(decisions), per_account(expected)
    cross_key = {a for a, ds in {**got, **want}.items()
                 if any(set(d["triggers"]) & CROSS_KEY for d in ds)}
    exact = differing = 0
    differences = []
    for account in sorted(set(got) | set(want)):
        actual = [tuple(d[k] for k in COMPARED) for d in got.get(account, [])]
        wanted = [tuple(d[k] for k in COMPARED) for d in want.get(account, [])]
        if account not in cross_key:
            assert actual == wanted, _first_difference(account, actual, wanted)
            exact += 1
        elif actual != wanted:
            differing += 1
            differences.append(_first_difference(account, actual, wanted))
    return ReplayComparison(exact, len(cross_key), differing, differences)
