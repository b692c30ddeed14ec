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
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol


class BatchProducer(Protocol):
    """The part of aiokafka's `AIOKafkaProducer` used here."""

    def create_batch(self) -> Any: ...

    async def send_batch(self, batch: Any, topic: str, *,
                         partition: int) -> asyncio.Future[Any]: ...

    async def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                   partition: int | None = None) -> asyncio.Future[Any]: ...


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

    for topic, partition, key, value in records:
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
