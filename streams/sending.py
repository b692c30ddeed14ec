"""Records to one topic-partition go to the producer as one batch, not one `send` each.

A stage's batch writes about three changelog records per input event (the account
record, the device entry, the device stage's held requests). aiokafka's `send` costs
about 9 µs of CPU per record (a future, the accumulator's checks and its own batch
lookup; Faust's wrapper adds its own), appending to a `BatchBuilder` 1.2-1.3 µs
(`bench/send_batch.py`). Order within a topic-partition is the order given; a record
with no partition (keyed: decisions, dead letters) goes through `send`, after every
batch already open for its topic, so it cannot overtake them. Each batch is closed
before it is handed over: aiokafka sends a closed batch at once, where an open one
waits out the producer's linger and takes `send`s of other callers.

Every topic sent to is first added to the topics the producer's client keeps metadata
for (`track_topic`). aiokafka (0.14) fetches metadata for every topic while that set is
empty, and `send` adds a topic to it only when the metadata lacks the topic. A topic
first seen in such a fetch is used untracked; once any other topic is added, the next
metadata update leaves it out, and its batches not yet sent wait on a leader the client
no longer looks up, re-fetching metadata in a busy loop until another send to that topic
adds it back. A stage waits for its batch's sends before it sends again: in a two-worker
run one worker stopped with every stage waiting (bench/perf.py's D2, 2026-12-06).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

# producer -> the topics `track_topic` made its client track
_TRACKED: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


class BatchProducer(Protocol):
    """The part of aiokafka's `AIOKafkaProducer` used here (`client`: its AIOKafkaClient)."""

    client: Any

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *,
                         partition: int) -> asyncio.Future[Any]: ...

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future[Any]: ...


async def track_topic(producer: BatchProducer, topic: str) -> None:
    """Make the producer's client keep `topic`'s metadata from now on (see the module
    docstring); a metadata update the first time, nothing after."""
    tracked = _TRACKED.setdefault(producer, set())
    if topic not in tracked:
        await producer.client.add_topic(topic)
        tracked.add(topic)


async def send_batched(producer: BatchProducer,
                       records: Iterable[tuple[str, int | None, bytes | None, bytes | None]],
                       ) -> list[asyncio.Future[Any]]:
    """Send (topic, partition, key, value) records; the futures of their delivery."""
    futures: list[asyncio.Future[Any]] = []
    open_: dict[tuple[str, int], Any] = {}

    async def close(where: tuple[str, int]) -> None:
        batch = open_.pop(where)
        batch.close()
        futures.append(await producer.send_batch(batch, where[0], partition=where[1]))

    tracked = _TRACKED.setdefault(producer, set())  # (the set `track_topic` adds to)
    for topic, partition, key, value in records:
        if topic not in tracked:
            await track_topic(producer, topic)
        if partition is None:
            for where in [w for w in open_ if w[0] == topic]:
                await close(where)
            futures.append(await producer.send(topic, value, key=key))
            continue
        where = (topic, partition)
        batch = open_.get(where)
        if batch is None:
            batch = open_[where] = producer.create_batch()
        if batch.append(timestamp=None, key=key, value=value) is None:  # full
            await close(where)
            batch = open_[where] = producer.create_batch()
            batch.append(timestamp=None, key=key, value=value)  # a first record always fits
    for where in list(open_):
        await close(where)
    return futures
