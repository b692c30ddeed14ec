"""Back-pressure on the input topics (`Warden._pace_inputs`, after each account batch): a
partition with too many cross-key requests unanswered stops reading all its input topics,
and one whose alignment buffer is crowded stops reading the topics ahead of it."""

from __future__ import annotations

import asyncio

import orjson
from faust.types import TP

from streams.app import Warden
from streams.records import Record
from streams.settings import Settings


class FakeConsumer:
    """What `_pace_inputs` uses of the consumer: the assignment, pausing and resuming."""

    def __init__(self, tps: set[TP]) -> None:
        self.tps = tps
        self.held: set[TP] = set()

    def assignment(self) -> set[TP]:
        return self.tps

    async def hold_back(self, tps) -> None:
        self.held |= set(tps)

    def resume_partitions(self, tps) -> None:
        self.held -= set(tps)


def warden_on_one_partition(monkeypatch, *, recovered: bool = True):
    monkeypatch.setenv("WARDEN_TOPIC_PREFIX", "pacing-")
    monkeypatch.setenv("WARDEN_PARTITIONS", "1")
    monkeypatch.setenv("WARDEN_MAX_IN_FLIGHT", "10")
    monkeypatch.setattr(Warden, "recovered", property(lambda self: recovered))
    warden = Warden(Settings.from_env())
    names = warden.settings.topics
    consumer = FakeConsumer({TP(t, 0) for t in (*names.inputs, names.account_inbox)})
    warden.app.consumer = consumer
    align = warden.account_stage.alignment
    align.align_ms, align.pause_held = 100, 2
    return warden, consumer, names


def hold(warden: Warden, topic: str, offset: int, ts: int) -> None:
    warden.account_stage.alignment.hold(
        ts, Record(topic, 0, offset, b"a", orjson.dumps({"ts": ts}), None), "event")


def test_a_crowded_partition_stops_reading_its_topics_ahead_until_it_drains(monkeypatch):
    warden, consumer, names = warden_on_one_partition(monkeypatch)
    ahead = [t for t in names.inputs if not t.endswith("device-signals")]
    for offset, topic in enumerate(ahead):  # the device signals are behind
        hold(warden, topic, offset, 1_000)
    asyncio.run(warden._pace_inputs())
    assert consumer.held == {TP(t, 0) for t in ahead}
    device = next(t for t in names.inputs if t.endswith("device-signals"))
    hold(warden, device, 0, 1_000)  # caught up: everything held may leave
    warden.account_stage.alignment.release([0])
    asyncio.run(warden._pace_inputs())
    assert consumer.held == set()


def test_a_partition_waiting_for_its_replies_stops_reading_every_input_topic(monkeypatch):
    warden, consumer, names = warden_on_one_partition(monkeypatch)
    warden.account_stage.in_flight[0] = 10
    asyncio.run(warden._pace_inputs())
    assert consumer.held == {TP(t, 0) for t in names.inputs}
    warden.account_stage.in_flight[0] = 5  # half of them answered
    asyncio.run(warden._pace_inputs())
    assert consumer.held == set()


def test_a_partition_with_an_account_crowded_by_waiting_inputs_stops_reading_its_topics(
        monkeypatch):
    """Its record holds them all: a hot account's backlog parked behind its replies made a
    record too big for Kafka (tests/integration/test_hot_account.py)."""
    warden, consumer, names = warden_on_one_partition(monkeypatch)
    warden.account_stage.crowded_accounts[0] = {b"hot": 2_000}
    asyncio.run(warden._pace_inputs())
    assert consumer.held == {TP(t, 0) for t in names.inputs}
    warden.account_stage.crowded_accounts[0] = {}
    asyncio.run(warden._pace_inputs())
    assert consumer.held == set()


def test_inputs_held_for_alignment_wait_for_a_backlog_paused_for_replies(monkeypatch):
    """The paused backlog is silent because of the pause: the alignment buffer does not
    count that silence toward its backlog wait (streams/alignment.py `stop`)."""
    warden, consumer, names = warden_on_one_partition(monkeypatch)
    align = warden.account_stage.alignment
    warden.account_stage.in_flight[0] = 10
    asyncio.run(warden._pace_inputs())
    assert align.stopped(0)
    warden.account_stage.in_flight[0] = 5
    asyncio.run(warden._pace_inputs())
    assert not align.stopped(0)


def test_nothing_is_paused_during_a_rebalance(monkeypatch):
    """Faust resumes every stream partition at its end: a pause made meanwhile would be
    undone without `_pace_inputs` knowing."""
    warden, consumer, names = warden_on_one_partition(monkeypatch, recovered=False)
    warden.account_stage.in_flight[0] = 10
    asyncio.run(warden._pace_inputs())
    assert consumer.held == set()
