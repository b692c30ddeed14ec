"""Event-time alignment of the five input topics of one partition (Kafka Streams'
`max.task.idle.ms`, for Warden's account stage).

The five input topics are consumed independently: one fetch can bring a
device signal at 12:00:01 while the appeal sent at 12:00:00 on
`moderation-commands` is still in the next fetch. Applied in arrival order,
the account would be extended before its appeal is received — not what
`warden replay` of the same events decides. So each input waits here, per
partition, until every input topic has delivered something at least as late
(it can then hold nothing earlier), or until it has waited `align_ms` of wall
time (a quiet topic must not hold the others back for long), and leaves in
(ts, arrival) order. A topic with a known backlog (its highwater is past what
reached the stage: after downtime or under lag) is not quiet but late, so
the input waits for it up to `backlog_wait_ms` instead (Kafka Streams: an
empty partition with known lag is waited for).

Each held input is kept in its own account's record (streams/records.py
`Pending.held`), written with the batch that holds it; its offset is then
acked as usual. Releasing it changes the same record as applying it, in one
write, so a crash leaves it either still held or applied, never lost (a
separate per-partition value once lost inputs: the changelog partitions are
acked independently). The buffers here are an in-memory index over those
records, rebuilt from the table after a start or a rebalance.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from streams.records import Record

HELD_CAP = 5_000  # inputs per partition; beyond it the earliest leave at once
# bytes per partition, so one account's record (which keeps its held inputs) stays far below
# Kafka's 1 MB record limit
HELD_BYTES = 256 * 1024
BACKLOG_WAIT_MS = 10_000


class InputAlignment:
    """Per-partition reorder buffers over the input topics."""

    def __init__(self, *, inputs: Iterable[str], align_ms: int,
                 load: Callable[[int], list[list[Any]]], wall_ms: Callable[[], int],
                 highwater: Callable[[str, int], int | None] = lambda topic, partition: None,
                 cap: int = HELD_CAP, max_bytes: int = HELD_BYTES,
                 backlog_wait_ms: int = BACKLOG_WAIT_MS) -> None:
        self.inputs = tuple(inputs)
        self.align_ms = align_ms
        self.highwater = highwater
        self.backlog_wait_ms = backlog_wait_ms
        # last offset received per input topic-partition (seeded from the consumer position)
        self.received: dict[tuple[str, int], int] = {}
        self.load = load
        self.wall_ms = wall_ms
        self.cap = cap
        self.max_bytes = max_bytes
        self._bytes: dict[int, int] = {}  # encoded size of the held entries per partition
        self.newest: dict[tuple[str, int], int] = {}  # newest ts received, per topic-partition
        self._heaps: dict[int, list[list[Any]]] = {}
        self._arrivals = 0
        self._ticked: dict[int, int] = {}
        # (partition, arrival) -> decoded event, saves a second decode; arrival numbers of a
        # partition's buffer restored from the table may repeat another partition's
        self._decoded: dict[tuple[int, int], object] = {}
        self.timed_out = 0  # inputs released by the wait limit, not by every topic passing them

    def heap(self, partition: int) -> list[list[Any]]:
        """Held inputs of a partition, [ts, arrival, wall_in, topic, offset, key, value, stamp],
        loaded from the account records on first use (after a start or a rebalance)."""
        heap = self._heaps.get(partition)
        if heap is None:
            heap = list(self.load(partition))
            for item in heap:
                self._arrivals = max(self._arrivals, item[1])
            self._bytes[partition] = sum(_size(item) for item in heap)
            heapq.heapify(heap)
            self._heaps[partition] = heap
        return heap

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            for item in self._heaps.pop(partition, None) or ():
                self._decoded.pop((partition, item[1]), None)
            self._bytes.pop(partition, None)
            for topic in self.inputs:
                self.newest.pop((topic, partition), None)
                self.received.pop((topic, partition), None)

    def hold(self, ts: int, rec: Record, event: object = None) -> list[Any]:
        """Hold an input; returns its entry, for the caller to keep in the account's record."""
        heap = self.heap(rec.partition)  # loaded first: arrivals continue after its own
        self._arrivals += 1
        if event is not None:
            self._decoded[(rec.partition, self._arrivals)] = event
        key = (rec.topic, rec.partition)
        self.newest[key] = max(ts, self.newest.get(key, ts))
        self.received[key] = max(rec.offset, self.received.get(key, -1))
        item = [ts, self._arrivals, self.wall_ms(), rec.topic, rec.offset,
                None if rec.key is None else rec.key.decode(), (rec.value or b"").decode(),
                rec.timestamp_ms]
        heapq.heappush(heap, item)
        self._bytes[rec.partition] = self._bytes.get(rec.partition, 0) + _size(item)
        return item

    def release(self, partitions: Iterable[int]) -> list[tuple[int, int, Record, object]]:
        """Inputs free to go, in (ts, arrival) order per partition, with the decoded event
        (None when it was held by an earlier run of the worker). The caller removes each from
        its account's record (by arrival) in the batch that applies it."""
        out: list[tuple[int, int, Record, object]] = []
        now = self.wall_ms()
        for partition in partitions:
            heap = self.heap(partition)
            while heap and self._may_leave(heap, partition, now):
                item = heapq.heappop(heap)
                self._bytes[partition] -= _size(item)
                ts, arrival, _wall, topic, offset, key, value, stamp = item
                out.append((ts, arrival, Record(topic, partition, offset,
                                                None if key is None else key.encode(),
                                                value.encode(), stamp),
                            self._decoded.pop((partition, arrival), None)))
        return out

    def _head_wait(self, heap: list[list[Any]], partition: int) -> int:
        """How long the partition's earliest held input waits in all (0: it may leave now)."""
        if self.align_ms <= 0 or len(heap) > self.cap or self._bytes[partition] > self.max_bytes:
            return 0
        return self._wait_limit(heap[0][0], partition)

    def _may_leave(self, heap: list[list[Any]], partition: int, now: int) -> bool:
        limit = self._head_wait(heap, partition)
        if now - heap[0][2] >= limit:
            self.timed_out += limit > 0
            return True
        return False

    def _wait_limit(self, ts: int, partition: int) -> int:
        """How long an input at `ts` may wait: 0 once every topic passed it, `align_ms` for a
        quiet topic, `backlog_wait_ms` for a topic known to have records not received yet."""
        limit = 0
        for topic in self.inputs:
            key = (topic, partition)
            if self.newest.get(key, -1) >= ts:
                continue
            end = self.highwater(topic, partition)
            backlog = end is not None and end > self.received.get(key, -1) + 1
            limit = max(limit, self.backlog_wait_ms if backlog else self.align_ms)
        return limit

    def due_partitions(self) -> list[int]:
        """Partitions (of those in memory) whose earliest held input may leave now."""
        now = self.wall_ms()
        return [p for p, heap in self._heaps.items()
                if heap and now - heap[0][2] >= self._head_wait(heap, p)]

    def next_due_ms(self) -> int | None:
        """Wall-clock ms until the earliest held input in memory may leave (0: now), or None
        when nothing is held: the stage's batch loop wakes then, with or without a record of
        its partition (a tick through Kafka cost one more round trip: issue #5)."""
        now = self.wall_ms()
        return min((max(0, heap[0][2] + self._head_wait(heap, p) - now)
                    for p, heap in self._heaps.items() if heap), default=None)

    def waiting(self) -> dict[int, int]:
        """Held inputs per partition (for the gauge)."""
        return {p: len(h) for p, h in self._heaps.items()}

    def due(self, partitions: Iterable[int]) -> list[int]:
        """Partitions whose earliest held input has waited its full time: a batch should run."""
        now = self.wall_ms()
        due = [p for p in partitions
               if (heap := self.heap(p))
               and now - heap[0][2] >= self._wait_limit(heap[0][0], p)
               and now - self._ticked.get(p, -self.align_ms) >= self.align_ms]
        for p in due:
            self._ticked[p] = now  # one tick per wait: the tick is already on its way
        return due


def _size(item: list[Any]) -> int:
    """Exact stored size of one entry (escaping can double a value's quotes)."""
    return len(orjson.dumps(item)) + 1
