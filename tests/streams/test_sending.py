"""streams/sending.py: records reach each topic-partition in the order given, in batches.

The fake producer keeps aiokafka's order: whatever is handed to it (a batch or a single
keyed record) is queued in call order, as aiokafka's accumulator queues it per partition.
"""

from __future__ import annotations

import asyncio
from typing import Any

from streams.sending import send_batched


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


class FakeProducer:
    def __init__(self, capacity: int = 3) -> None:
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
