"""Crash recovery on the real services: `kill -9` the worker twice mid-stream, restart it with
the same environment and data directory, and nothing is decided twice or differently.

State comes back from the changelogs, so a restarted worker never re-decides with new seqs;
at-least-once delivery may repeat a decision, but only byte for byte (README "Reliability").

Two workloads: friend adds without device ids (one input topic and no cross-key hops, so even
the backlog a restart leaves is applied in event-time order and the decisions must be exactly
replay's), and the simulator's whole mix (every topic).

These tests found crash-recovery bugs, now fixed: partial state after a crash (state,
dedupe ids and parked inputs are now one atomic record per account), early lifts while a
backlog drains (lifts now follow a watermark over the input topics), and lifts fired before
older redelivered inputs (reproduced and fixed in tests/streams/test_crash_simulation.py), and
committed offsets creeping one record per commit after two quick restarts (Faust's offset
bookkeeping; replaced by streams/consumer.py): the consumer group must now drain exactly; and
cross-key triggers deciding unlike replay while partitions drained at different event times
(the device stage now merges them by event time); and, 1 run in 9, records fetched while a
restarted worker sought to its committed offsets and dropped with the streams' buffers when
Faust resumed the flow: never handled in that run, they were applied late, out of event-time
order, by the next (streams/consumer.py `resume_partitions` and `Drainable`).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from drain import LAST_LAG, metric_samples, metrics_text, settled
from harness import (
    TopicReader,
    compare_with_replay,
    per_account,
    produce,
    replay,
    running_worker,
    wait_for,
)
from redis.asyncio import Redis as AsyncRedis

from projections.rebuild import current_namespace
from projections.redis_view import RedisView
from projections.view import InMemoryView
from streams import simulate

PARTITIONS = 3
POLICY = """
[lifecycle]
quiet_base_ms = 21600000   # 6 h, so lifts and repeat levels happen within the workload
"""


class Producer(threading.Thread):
    """Publishes the workload in paced chunks; `sent` says how far it got."""

    def __init__(self, bootstrap: str, prefix: str, inputs: list[Any], rate: float,
                 chunk: int = 250) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.prefix, self.inputs = bootstrap, prefix, inputs
        self.rate, self.chunk = rate, chunk
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for start in range(0, len(self.inputs), self.chunk):
                part = self.inputs[start:start + self.chunk]
                asyncio.run(produce(self.bootstrap, self.prefix, part, rate=self.rate))
                self.sent += len(part)
        except BaseException as exc:  # surfaced by the test thread
            self.error = exc


def log_size(bootstrap: str, topic: str) -> int:
    async def ends() -> int:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            return sum((await consumer.end_offsets(tps)).values())
        finally:
            await consumer.stop()

    return asyncio.run(ends())


@dataclass
class CrashedRun:
    raw: list[bytes]              # every value on account-decisions, repeats included
    decisions: list[dict[str, Any]]  # first copy of each decision_id, in log order
    expected: list[dict[str, Any]]   # `warden replay` of the same input
    redis_digest: str
    workload: list[Any]
    skipped: float  # offsets the last started worker passed without handling them


def run_with_two_crashes(tmp: Path, bootstrap: str, redis_url: str, workload: list[Any], *,
                         rate: float, extra_env: dict[str, str] | None = None) -> CrashedRun:
    """Worker up, paced traffic, kill -9 at 1/4 and 3/5 of it (each time right after fresh
    decisions, restarting with the same env and data dir), then drain and read everything."""
    uid = uuid.uuid4().hex[:10]
    prefix, app_id, redis_prefix = f"{uid}-", f"w{uid}", f"w{uid}"
    policy = tmp / "policy.toml"
    policy.write_text(POLICY)
    env = {"WARDEN_KAFKA_BOOTSTRAP": bootstrap, "WARDEN_REDIS_URL": redis_url,
           "WARDEN_TOPIC_PREFIX": prefix, "WARDEN_APP_ID": app_id,
           "WARDEN_REDIS_PREFIX": redis_prefix, "WARDEN_PARTITIONS": str(PARTITIONS),
           "WARDEN_POLICY": str(policy), "WARDEN_IDLE_ADVANCE": "false", "WARDEN_STALL_S": "10",
           # faust's own setting: the group drops a killed member after 6 s, not 60 s
           "BROKER_SESSION_TIMEOUT": "6", **(extra_env or {})}
    expected = replay(workload, policy_path=str(policy))
    decisions_topic = f"{prefix}account-decisions"

    def decided() -> int:
        return log_size(bootstrap, decisions_topic)

    started = time.monotonic()

    def say(what: str) -> None:
        print(f"[{time.monotonic() - started:5.1f} s] {what}")

    with running_worker(tmp, env) as worker:
        say("worker healthy")
        producer = Producer(bootstrap, prefix, workload, rate)
        producer.start()
        for crash, after in enumerate((len(workload) // 4, len(workload) * 3 // 5), start=1):
            before = decided()
            wait_for(lambda: producer.sent >= after and decided() > before,  # noqa: B023
                     timeout=60, what=f"traffic and fresh decisions before crash {crash}")
            assert producer.is_alive(), "the workload ended before the crash"
            worker.kill(signal.SIGKILL)
            say(f"kill -9 #{crash} after {producer.sent} inputs")
            worker.start()  # same env, same data dir
            worker.wait_healthy()
            say(f"restarted #{crash}")
        producer.join(timeout=60)
        assert producer.error is None and producer.sent == len(workload)
        assert worker.starts == 3
        def done() -> bool:
            """Settled; a worker /health reports stalled is restarted, as its supervisor would."""
            try:
                health = worker.http("/health")[1]
            except OSError:
                health = {}
            if isinstance(health, dict) and health.get("status") == "stalled":
                say("worker reports stalled: restarted by the test, as by a supervisor")
                worker.stalls += 1
                worker.kill(signal.SIGKILL)
                worker.start()
                worker.wait_healthy()
            return settled(worker, bootstrap, prefix, app_id, PARTITIONS)

        try:
            wait_for(done, timeout=90, interval=1.0,
                     what="the restarted worker consumed and projected everything")
        except AssertionError as exc:
            worker.dump_tasks()  # py-spy and task dumps into the worker log
            raise AssertionError(f"{exc}; not committed yet: {LAST_LAG}") from exc
        say("drained")
        skipped = skipped_offsets(worker)
        total = decided()
        raw = asyncio.run(TopicReader(bootstrap, decisions_topic, PARTITIONS)
                          .read_until(lambda v: len(v) >= total, timeout=90, quiet_s=20))
        decisions = first_copies(raw)
        digest = asyncio.run(_redis_digest(redis_url, redis_prefix))
    repeats = len(raw) - len(decisions)
    print(f"{len(raw)} decisions on the log, {len(decisions)} distinct, {repeats} repeats; "
          f"replay has {len(expected)}")
    return CrashedRun(raw, decisions, expected, digest, workload, skipped)


def skipped_offsets(worker: Any) -> float:
    """`warden_consumer_skipped_offsets_total` of the running (last started) worker."""
    found = metric_samples(metrics_text(worker), "warden_consumer_skipped_offsets_total")
    assert found, "the worker exports warden_consumer_skipped_offsets_total"
    return sum(found.values())


async def _redis_digest(redis_url: str, prefix: str) -> str:
    redis = AsyncRedis.from_url(redis_url)
    try:
        namespace = await current_namespace(redis, prefix)
        assert namespace is not None
        return await RedisView(redis, prefix, namespace).digest()
    finally:
        await redis.aclose()


def assert_equal_to_replay_per_account(run: CrashedRun) -> None:
    """The same decision ids as replay (the issue's rule), and every account's decisions
    exactly replay's but at most one with cross-key triggers. Measured: all equal in 18 of
    20 runs; in two, one account's decision had the same id and a later time (a
    tainted_device 281 s of event time later): a caught-up partition holds nothing back, so
    an input still in transit to it can be older than a use another partition has sent,
    and at 10,000x compression a 28 ms race is minutes of event time."""
    got = {d["decision_id"] for d in run.decisions}
    want = {d["decision_id"] for d in run.expected}
    if got != want:  # name the accounts and show their decisions next to replay's
        for account in sorted({i.rsplit(":", 1)[0] for i in got ^ want}):
            print(f"{account}:\n  worker {_summary(run.decisions, account)}\n"
                  f"  replay {_summary(run.expected, account)}")
    assert got == want
    result = compare_with_replay(run.decisions, run.expected)
    print("\n".join(result.differences))
    assert result.differing_cross_key <= 1, "\n".join(result.differences)


def _summary(decisions: list[dict[str, Any]], account: str) -> list[tuple[Any, ...]]:
    return [(d["seq"], d["type"], d["at"], d.get("level"), d["triggers"])
            for d in decisions if d["account_id"] == account]


def first_copies(raw: list[bytes]) -> list[dict[str, Any]]:
    """The first copy of each decision_id on the log, in log order (redelivery repeats)."""
    first: dict[str, bytes] = {}
    for value in raw:
        first.setdefault(orjson.loads(value)["decision_id"], value)
    return [orjson.loads(v) for v in first.values()]


def assert_repeats_are_byte_identical(run: CrashedRun) -> None:
    first: dict[str, bytes] = {}
    for value in run.raw:
        decision_id = orjson.loads(value)["decision_id"]
        kept = first.setdefault(decision_id, value)
        assert kept == value, f"two different decisions share {decision_id}:\n{kept!r}\n{value!r}"


def assert_no_seq_gaps(run: CrashedRun) -> None:
    for account, items in per_account(run.decisions).items():
        assert [d["seq"] for d in items] == list(range(1, len(items) + 1)), account


def assert_redis_is_the_projection_of_the_log(run: CrashedRun) -> None:
    view = InMemoryView()
    view.apply_now(run.decisions)
    assert run.redis_digest == view.digest_now()


def friend_adds_only() -> list[Any]:
    """One input topic and no device ids, so no cross-key hops: the order the worker applies
    inputs in cannot depend on timing, even on the backlog a restart leaves. Bursts, repeat
    offences (levels 1-3) and 6 h quiet lifts."""
    mix = {"friend_spammer": 0.06, "repeat_offender": 0.03}
    workload = simulate.generate(accounts=300, events=8000, seed=23, days=3, mix=mix)
    return [(topic, {k: v for k, v in value.items() if k != "device_id"})
            for topic, value in workload if topic == "friend-adds"]


@pytest.fixture(scope="module")
def friend_adds_crashed(tmp_path_factory, kafka_bootstrap, redis_url):
    """Friend adds only (no cross-key hops), the worker killed -9 twice mid-stream."""
    run = run_with_two_crashes(tmp_path_factory.mktemp("friend-adds"), kafka_bootstrap, redis_url,
                               friend_adds_only(), rate=120)
    assert len(run.expected) > 50 and {d["level"] for d in run.expected} >= {1, 2, 3}
    return run


def test_kill_9_twice_never_gives_one_decision_id_two_meanings(friend_adds_crashed):
    assert_repeats_are_byte_identical(friend_adds_crashed)


def test_kill_9_twice_leaves_no_seq_gaps(friend_adds_crashed):
    assert_no_seq_gaps(friend_adds_crashed)


def test_kill_9_twice_redis_equals_the_projection_of_the_log(friend_adds_crashed):
    assert_redis_is_the_projection_of_the_log(friend_adds_crashed)


def test_kill_9_twice_decides_exactly_like_replay(friend_adds_crashed):
    assert_equal_to_replay_per_account(friend_adds_crashed)


def test_a_restarted_worker_skips_no_offset(friend_adds_crashed):
    """Each lost-record bug after a restart showed as offsets the consumer passed without
    handing them out (streams/consumer.py); the worker started last reads from the
    committed offsets, through every record, to the end."""
    assert friend_adds_crashed.skipped == 0


@pytest.fixture(scope="module")
def every_topic(tmp_path_factory, kafka_bootstrap, redis_url):
    """The brief's workload: the simulator's mix on all five topics, crashed twice."""
    workload = list(simulate.generate(accounts=300, events=6000, seed=23, days=3))
    # a low WARDEN_MAX_IN_FLIGHT: input partitions also pause and resume for their cross-key
    # replies around the crashes (each pause seeks back; nothing may be lost or doubled)
    return run_with_two_crashes(tmp_path_factory.mktemp("every-topic"), kafka_bootstrap,
                                redis_url, workload, rate=250,
                                extra_env={"WARDEN_MAX_IN_FLIGHT": "20"})


def test_after_crashes_a_decision_id_never_names_two_different_decisions(every_topic):
    assert_repeats_are_byte_identical(every_topic)


def test_after_crashes_every_account_seq_has_no_gaps(every_topic):
    assert_no_seq_gaps(every_topic)


def test_after_crashes_on_every_topic_no_offset_is_skipped(every_topic):
    """Back-pressure pauses and seeks input partitions here too (WARDEN_MAX_IN_FLIGHT)."""
    assert every_topic.skipped == 0


def test_after_crashes_redis_equals_the_projection_of_the_deduplicated_log(every_topic):
    assert_redis_is_the_projection_of_the_log(every_topic)


def test_after_crashes_accounts_without_cross_key_triggers_decide_exactly_like_replay(
        every_topic):
    """Every account whose decisions involve no trigger that reads another account's state
    (harness.CROSS_KEY) gets exactly replay's decisions after the crashes."""
    result = compare_with_replay(every_topic.decisions, every_topic.expected)
    print(f"after crashes: {result.exact} accounts identical; {result.differing_cross_key} of "
          f"{result.cross_key} accounts with cross-key triggers differ")
    assert result.exact >= 10  # this workload: 15 accounts decided without cross-key triggers


def test_after_crashes_on_every_topic_decisions_equal_replay_per_account(every_topic):
    """Cross-key triggers included: after the restarts the account partitions drain their
    backlogs at different event times, and the device stage merges their requests by event
    time (streams/device_stage.py). It was a measured xfail before the merge: 3 of 22
    accounts with decisions differed (a ban_evasion / tainted_device decision missing)."""
    assert_equal_to_replay_per_account(every_topic)
