"""streams/sending.py: records reach each topic-partition in the order given, in batches.

The fake producer keeps aiokafka's order: whatever is handed to it (a batch or a single
keyed record) is queued in call order, as aiokafka's accumulator queues it per partition.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.sending import send_batched, track_topic


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes | None, bytes | None]] = []
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def append(self, *, timestamp: Any, key: bytes | None, value: bytes | None) -> Any:
        assert not self.closed
        if self.records and len(self.records) >= self.capacity:
            return None  # full (a first record always fits, as in aiokafka)
        self.records.append((key, value))
        return object()


class FakeClient:
    def __init__(self) -> None:
        self.added: list[str] = []

    async def add_topic(self, topic: str) -> None:
        self.added.append(topic)


class FakeProducer:
    def __init__(self, capacity: int = 3) -> None:
        self.client = FakeClient()
        self.capacity = capacity
        self.queued: list[tuple[str, int | None, list[tuple[bytes | None, bytes | None]]]] = []
        self.open_handed_over = 0

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        self.open_handed_over += not batch.closed
        self.queued.append((topic, partition, batch.records))
        return _done()

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None) -> Any:
        self.queued.append((topic, partition, [(key, value)]))
        return _done()

    def per_partition(self) -> dict[tuple[str, int | None], list[bytes | None]]:
        out: dict[tuple[str, int | None], list[bytes | None]] = {}
        for topic, partition, records in self.queued:
            out.setdefault((topic, partition), []).extend(v for _, v in records)
        return out


def _done() -> asyncio.Future[None]:
    future = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def send(producer: FakeProducer, records: list[tuple[str, int | None, bytes | None,
                                                     bytes | None]]) -> int:
    async def go() -> int:
        futures = await send_batched(producer, records)
        await asyncio.gather(*futures)
        return len(futures)
    return asyncio.run(go())


def test_a_changelog_write_per_key_goes_out_as_one_batch_per_partition():
    producer = FakeProducer(capacity=100)
    records = [("accounts-changelog", i % 2, b"k%d" % i, b"v%d" % i) for i in range(6)]
    assert send(producer, records) == 2
    assert producer.per_partition() == {("accounts-changelog", 0): [b"v0", b"v2", b"v4"],
                                        ("accounts-changelog", 1): [b"v1", b"v3", b"v5"]}


def test_a_full_batch_is_sent_and_the_next_record_starts_another_in_order():
    producer = FakeProducer(capacity=3)
    records = [("t", 0, b"k", b"v%d" % i) for i in range(7)]
    assert send(producer, records) == 3
    assert [len(r) for _, _, r in producer.queued] == [3, 3, 1]
    assert producer.per_partition()[("t", 0)] == [b"v%d" % i for i in range(7)]


def test_a_keyed_record_without_partition_does_not_overtake_its_topics_open_batches():
    producer = FakeProducer(capacity=100)
    records = [("decisions", 1, b"a", b"first"), ("other", 0, b"x", b"x1"),
               ("decisions", None, b"b", b"second"), ("decisions", 1, b"a", b"third"),
               ("other", 0, b"x", b"x2")]
    send(producer, records)
    assert producer.queued == [("decisions", 1, [(b"a", b"first")]),
                               ("decisions", None, [(b"b", b"second")]),
                               ("other", 0, [(b"x", b"x1"), (b"x", b"x2")]),
                               ("decisions", 1, [(b"a", b"third")])]


def test_a_delete_is_a_record_with_no_value_and_nothing_to_send_sends_nothing():
    producer = FakeProducer()
    assert send(producer, [("devices-changelog", 3, b"dev-1", None)]) == 1
    assert producer.queued == [("devices-changelog", 3, [(b"dev-1", None)])]
    assert send(FakeProducer(), []) == 0


def test_every_batch_is_closed_when_handed_over():
    """aiokafka sends a closed batch at once; an open one waits out the producer's linger
    and takes other callers' `send`s."""
    producer = FakeProducer(capacity=2)
    send(producer, [("t", i % 3, b"k", b"v%d" % i) for i in range(9)] + [("d", None, b"k", b"x")])
    assert len(producer.queued) == 7 and producer.open_handed_over == 0


def test_each_topic_is_tracked_by_the_producers_client_once_before_its_first_record():
    producer = FakeProducer()
    send(producer, [("a", 0, b"k", b"v"), ("b", None, b"k", b"v"), ("a", 1, b"k", b"v")])
    send(producer, [("a", 0, b"k", b"v"), ("c", 0, b"k", b"v")])
    assert producer.client.added == ["a", "b", "c"]


@asynccontextmanager
async def producer_that_saw_every_topic(bootstrap: str) -> AsyncIterator[tuple[Any, str, str]]:
    """A started producer whose metadata came from a fetch of every topic (as at a worker's
    start), the topic it saw then, and a topic created after that fetch."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    stamp = time.time_ns()
    first, later = f"sending-first-{stamp}", f"sending-later-{stamp}"
    await admin.create_topics([NewTopic(first, 1, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for _ in range(50):  # its client tracks no topic yet: every topic's metadata
            await producer.client.force_metadata_update()
            if first in producer.client.cluster.topics():
                break
            await asyncio.sleep(0.1)
        await admin.create_topics([NewTopic(later, 1, 1)])
        yield producer, first, later
    finally:
        await producer.stop()
        await admin.delete_topics([first, later])
        await admin.close()


async def still_known(producer: Any, topic: str) -> bool:
    await producer.client.force_metadata_update()
    return topic in producer.client.cluster.topics()


def test_a_topic_sent_to_keeps_its_metadata_when_the_producer_learns_another(kafka_bootstrap):
    """aiokafka fetches every topic's metadata while its client tracks none; a topic seen
    that way and then sent to stays untracked, and drops out of the metadata once another
    topic is added (its unsent batches then wait on a leader nobody looks up)."""
    async def go() -> bool:
        async with producer_that_saw_every_topic(kafka_bootstrap) as (producer, first, later):
            await asyncio.gather(*await send_batched(producer, [(first, 0, b"k", b"v")]))
            await asyncio.gather(*await send_batched(producer, [(later, 0, b"k", b"v")]))
            return await still_known(producer, first)

    assert asyncio.run(go())


def test_track_topic_alone_keeps_a_topic_in_the_metadata(kafka_bootstrap):
    """Without `track_topic` the same steps lose the first topic: the aiokafka behaviour
    the test above guards against (if aiokafka fixes it, this test says so)."""
    async def go() -> tuple[bool, bool]:
        async with producer_that_saw_every_topic(kafka_bootstrap) as (producer, first, later):
            await (await producer.send(first, b"v"))
            await (await producer.send(later, b"v"))  # aiokafka adds `later` only
            lost = not await still_known(producer, first)
            await track_topic(producer, first)
            await track_topic(producer, later)
            return lost, await still_known(producer, first)

    lost_without, kept_with = asyncio.run(go())
    assert lost_without, "aiokafka kept the untracked topic: streams/sending.py's note is stale"
    assert kept_with
