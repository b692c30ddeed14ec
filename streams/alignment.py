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
the input waits for it while it keeps delivering, and up to `backlog_wait_ms`
after its last delivery (Kafka Streams: an empty partition with known lag is
waited for). Counted from the input's arrival instead, a sparse topic's input
fetched at the start of a long backlog left as soon as it was the earliest,
10 s in, hours of event time ahead of the dense topics still catching up (an
appeal decided before an earlier extension, tests/integration/test_two_workers.py).

With `fetch_skew_ms` (WARDEN_ALIGN_SKEW_MS; off by default), a topic found empty
does not hold an input (Kafka Streams after KIP-695): when a fetch asked for at least
`fetch_skew_ms` after the input's own fetch found nothing on the broker past what reached
the stage, anything the topic gets later was appended after that, which a producer's
earlier record can be only if it lagged the input by more than the margin. `align_ms`
stays the bound for a topic not confirmed empty (paused, its fetched records still on
their way, or no fetch since). See `FETCH_SKEW_MS` for why it is off by default.

A held input lives only in memory; what makes it safe is the offset commit.
The worker commits no input topic-partition past the earliest input it holds,
nor past one released until the batch that applied it has handed its state to
the producer (`floor`, `settle`; `WardenConsumer.commit_floor`): after a crash
the held inputs are read again and the ones applied since are ignored as
repeats (inputs are deduplicated by id in their account's record). Writing
each held input into its account's record, as Warden did before, cost a load
and a write of that record per input on top of the ones applying it (issue #5).
Inputs that an older worker kept in account records (`Pending.held`) are still
restored from them after a start or a rebalance, and leave as before.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

from streams.records import Record

# Per partition, inputs and bytes of keys and values held: above the first pair its topics
# ahead of the earliest input are paused (`topics_ahead`, until it holds half as much); the
# second pair is the hard cap, beyond which the earliest leave at once, out of order. Their
# gap is what still arrives after a pause: the records handed over and not taken yet
# (streams/direct.py SINK_MAX) and one fetch. The bytes are memory, and how far back a
# crash re-reads.
PAUSE_HELD, PAUSE_BYTES = 2_000, 512 * 1024
HELD_CAP, HELD_BYTES = 20_000, 4 * 1024 * 1024
BACKLOG_WAIT_MS = 10_000
# The fetch rule's margin, when on: a fetch confirms a topic empty for an input only if it
# was asked for this long after the input's own fetch. A producer batches per partition and
# sends a node's next request only when the one before is answered, so a record it was
# given first can be appended after a later one by its linger plus a request's round trip,
# longer on a busy machine. In tests/integration/test_pipeline.py (400 inputs/s in flushed
# chunks of 100, on 2 CPUs shared with the broker and the worker), a 100 ms margin applied
# 24, 14 and 5 of 8,000 inputs out of event-time order in 3 of 9 runs (0 in 3 runs with the
# rule off), and 20 ms 13 in a CI run; in bench/perf.py's latency phase at 2,000 events/s
# the rule (20 ms) gave no latency gain in six alternating pairs, and at 200 events/s cut
# p50 from about 163 to 100 ms. So it is off unless WARDEN_ALIGN_SKEW_MS sets a margin, for
# producers whose lag is known to stay below it. (A value to pass: not a default.)
FETCH_SKEW_MS = 100


class InputAlignment:
    """Per-partition reorder buffers over the input topics."""

    def __init__(self, *, inputs: Iterable[str], align_ms: int,
                 load: Callable[[int], list[list[Any]]], wall_ms: Callable[[], int],
                 highwater: Callable[[str, int], int | None] = lambda topic, partition: None,
                 fetched_at: Callable[[str, int], int | None] = lambda topic, partition: None,
                 requested_at: Callable[[str, int], int | None] = lambda topic, partition: None,
                 cap: int = HELD_CAP, max_bytes: int = HELD_BYTES,
                 pause_held: int = PAUSE_HELD, pause_bytes: int = PAUSE_BYTES,
                 backlog_wait_ms: int = BACKLOG_WAIT_MS,
                 fetch_skew_ms: int | None = None) -> None:
        self.inputs = tuple(inputs)
        self.fetch_skew_ms = fetch_skew_ms
        self.align_ms = align_ms
        self.highwater = highwater
        # wall time of the last fetch answered for an input topic-partition (read before its
        # highwater: that highwater is then at least as new as the fetch)
        self.fetched_at = fetched_at
        # wall time the fetch request behind an input topic-partition's highwater was sent:
        # the broker read that highwater no earlier (read before it, as `fetched_at`)
        self.requested_at = requested_at
        self.backlog_wait_ms = backlog_wait_ms
        # last offset received per input topic-partition (seeded from the consumer position)
        self.received: dict[tuple[str, int], int] = {}
        self.load = load
        self.wall_ms = wall_ms
        self.cap = cap
        self.max_bytes = max_bytes
        self.pause_held, self.pause_bytes = pause_held, pause_bytes
        self._bytes: dict[int, int] = {}  # held keys and values per partition
        self.newest: dict[tuple[str, int], int] = {}  # newest ts received, per topic-partition
        self.delivered: dict[tuple[str, int], int] = {}  # wall time of the last input received
        # per partition: [ts, arrival, wall_in, Record, decoded event or None (restored),
        # a wall time no earlier than the fetch that brought it]
        self._heaps: dict[int, list[list[Any]]] = {}
        self._arrivals = 0
        self._ticked: dict[int, int] = {}
        self.timed_out = 0  # inputs released by the wait limit, not by every topic passing them
        # offsets not to commit past, per input topic-partition: held, or released and not
        # settled yet (offset -> count, and a heap of them with stale entries popped lazily)
        self._unsettled: dict[tuple[str, int], dict[int, int]] = {}
        self._floors: dict[tuple[str, int], list[int]] = {}
        self._releasing: list[tuple[str, int, int]] = []
        self._crowded: set[int] = set()  # partitions whose topics ahead are paused
        self._stopped: set[int] = set()  # partitions whose input topics wait for replies

    def heap(self, partition: int) -> list[list[Any]]:
        """Held inputs of a partition, [ts, arrival, wall_in, record, event], with those an
        older worker kept in account records (`load`, entries [ts, arrival, wall_in, topic,
        offset, key, value, stamp]) restored first (after a start or a rebalance)."""
        heap = self._heaps.get(partition)
        if heap is None:
            heap = []
            for ts, arrival, wall_in, topic, offset, key, value, stamp in self.load(partition):
                self._arrivals = max(self._arrivals, arrival)
                heap.append([ts, arrival, wall_in,
                             Record(topic, partition, offset,
                                    None if key is None else key.encode(), value.encode(), stamp),
                             None, wall_in])
            self._bytes[partition] = sum(_size(item[3]) for item in heap)
            heapq.heapify(heap)
            self._heaps[partition] = heap
        return heap

    def stop(self, partition: int) -> None:
        """The worker paused the partition's input topics (for its cross-key replies,
        WARDEN_MAX_IN_FLIGHT): a topic with a backlog is not delivering because of the
        pause, so its held inputs wait for it however long the pause lasts. Counting the
        pause as the topic's silence released a partition's held inputs ahead of its
        paused backlog once it outlasted the 10 s backlog wait (9,685 inputs out of
        event-time order in one 100,000-event run of bench/perf.py's stage D)."""
        self._stopped.add(partition)

    def stopped(self, partition: int) -> bool:
        return partition in self._stopped

    def resume(self, partition: int) -> None:
        """The pause is over: the backlog wait starts again from now."""
        if partition in self._stopped:
            self._stopped.discard(partition)
            now = self.wall_ms()
            for topic in self.inputs:
                if (topic, partition) in self.delivered:
                    self.delivered[(topic, partition)] = now

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the partitions' buffers (revoked or reassigned). Their offsets stay unsettled
        until `reset_floors`: a commit during the rebalance must not pass them."""
        for partition in partitions:
            self._heaps.pop(partition, None)
            self._bytes.pop(partition, None)
            self._crowded.discard(partition)
            self._stopped.discard(partition)
            for topic in self.inputs:
                self.newest.pop((topic, partition), None)
                self.received.pop((topic, partition), None)
                self.delivered.pop((topic, partition), None)

    def reset_floors(self) -> None:
        """After an assignment: every partition is read again from its committed offset."""
        self._unsettled.clear()
        self._floors.clear()
        self._releasing.clear()

    def hold(self, ts: int, rec: Record, event: object) -> None:
        """Hold an input (with its decoded event), in memory only: its offset is not committed
        until it has been applied (`floor`)."""
        heap = self.heap(rec.partition)  # loaded first: arrivals continue after its own
        self._arrivals += 1
        key = (rec.topic, rec.partition)
        self.newest[key] = max(ts, self.newest.get(key, ts))
        self.received[key] = max(rec.offset, self.received.get(key, -1))
        now = self.delivered[key] = self.wall_ms()
        # its own fetch's time, or a later one (read only for the fetch rule, which is off
        # by default: one call into the consumer per input otherwise)
        fetched = None if self.fetch_skew_ms is None else self.fetched_at(rec.topic, rec.partition)
        heapq.heappush(heap, [ts, self._arrivals, now, rec, event,
                              now if fetched is None else min(fetched, now)])
        self._bytes[rec.partition] = self._bytes.get(rec.partition, 0) + _size(rec)
        counts = self._unsettled.setdefault(key, {})
        if rec.offset not in counts:
            heapq.heappush(self._floors.setdefault(key, []), rec.offset)
        counts[rec.offset] = counts.get(rec.offset, 0) + 1

    def release(self, partitions: Iterable[int]) -> list[tuple[int, int, Record, object]]:
        """Inputs free to go, in (ts, arrival) order per partition, with the decoded event
        (None when it was restored from an account record: the caller decodes it and removes
        it from that record, by arrival, in the batch that applies it). Their offsets stay
        unsettled until `settle`."""
        out: list[tuple[int, int, Record, object]] = []
        now = self.wall_ms()
        for partition in partitions:
            heap = self.heap(partition)
            while heap and self._may_leave(heap, partition, now):
                ts, arrival, _wall, rec, event, _fetched = heapq.heappop(heap)
                self._bytes[partition] -= _size(rec)
                if event is not None:  # (a restored one was committed long ago)
                    self._releasing.append((rec.topic, rec.partition, rec.offset))
                out.append((ts, arrival, rec, event))
        return out

    def settle(self) -> None:
        """The inputs released so far are applied and their state is with the producer (the
        batch that applied them is committed): their offsets may be committed."""
        touched = set()
        for topic, partition, offset in self._releasing:
            key = (topic, partition)
            counts = self._unsettled.get(key)
            if counts is None or offset not in counts:
                continue  # (reset by an assignment since)
            if counts[offset] > 1:
                counts[offset] -= 1
            else:
                del counts[offset]
            touched.add(key)
        self._releasing.clear()
        for topic, partition in touched:
            self.floor(topic, partition)  # drops the settled offsets at the top of its heap

    def floor(self, topic: str, partition: int) -> int | None:
        """The lowest offset of the topic-partition not to commit past (None: no limit)."""
        key = (topic, partition)
        floors = self._floors.get(key)
        if not floors:
            return None
        counts = self._unsettled[key]
        while floors and floors[0] not in counts:
            heapq.heappop(floors)
        return floors[0] if floors else None

    def _leaves_at(self, heap: list[list[Any]], partition: int) -> tuple[int, bool]:
        """The wall time the partition's earliest held input may leave at, and whether a
        wait limit (not every topic passing it) lets it go then."""
        ts, _arrival, wall_in, _rec, _event, fetched = heap[0]
        if self.align_ms <= 0 or len(heap) > self.cap or self._bytes[partition] > self.max_bytes:
            return wall_in, False
        leaves_at, waits = wall_in, False
        skew = self.fetch_skew_ms
        for topic in self.inputs:
            key = (topic, partition)
            if self.newest.get(key, -1) >= ts:
                continue
            # (read first: the highwater is then as new)
            asked = None if skew is None else self.requested_at(topic, partition)
            end = self.highwater(topic, partition)
            received = self.received.get(key, -1)
            if (skew is not None and asked is not None and asked >= fetched + skew
                    and end is not None and end <= received + 1):
                continue  # empty at a fetch asked for after the input's: nothing earlier
            waits = True
            if end is not None and end > received + 1:  # late, not quiet
                if partition in self._stopped:  # (paused here: waited for until resumed)
                    since = self.wall_ms()
                else:
                    since = max(wall_in, self.delivered.get(key, wall_in))
                leaves_at = max(leaves_at, since + self.backlog_wait_ms)
            else:
                leaves_at = max(leaves_at, wall_in + self.align_ms)
        return leaves_at, waits

    def _may_leave(self, heap: list[list[Any]], partition: int, now: int) -> bool:
        leaves_at, waits = self._leaves_at(heap, partition)
        if now >= leaves_at:
            self.timed_out += waits
            return True
        return False

    def due_partitions(self) -> list[int]:
        """Partitions (of those in memory) whose earliest held input may leave now."""
        now = self.wall_ms()
        return [p for p, heap in self._heaps.items()
                if heap and now >= self._leaves_at(heap, p)[0]]

    def next_due_ms(self) -> int | None:
        """Wall-clock ms until the earliest held input in memory may leave (0: now), or None
        when nothing is held: the stage's batch loop wakes then, with or without a record of
        its partition (a tick through Kafka cost one more round trip: issue #5)."""
        now = self.wall_ms()
        return min((max(0, self._leaves_at(heap, p)[0] - now)
                    for p, heap in self._heaps.items() if heap), default=None)

    def topics_ahead(self, partition: int) -> tuple[str, ...]:
        """Input topics of the partition not to fetch for now: while it holds more than
        `pause_held` inputs or `pause_bytes` (until half as much), those that have passed its
        earliest input.

        A fetch brings each partition's records by bytes, not by event time: after downtime
        a sparse topic's fetch covers days, a dense one's hours, and the buffer filled with
        inputs ahead of the dense topics until its cap released them early, out of order
        (a cold start over a 150,000-input backlog applied 87,699 device signals after later
        inputs). Paused, they leave room for the topics the earliest input waits for, as
        Kafka Streams pauses a partition whose buffer is full
        (`buffered.records.per.partition`)."""
        heap = self._heaps.get(partition)
        if not heap or self.align_ms <= 0:
            self._crowded.discard(partition)
            return ()
        held, size = len(heap), self._bytes.get(partition, 0)
        if partition in self._crowded:
            if held <= self.pause_held // 2 and size <= self.pause_bytes // 2:
                self._crowded.discard(partition)
                return ()
        elif held > self.pause_held or size > self.pause_bytes:
            self._crowded.add(partition)
        else:
            return ()
        ts = heap[0][0]
        passed = tuple(t for t in self.inputs if self.newest.get((t, partition), -1) >= ts)
        return passed if len(passed) < len(self.inputs) else ()  # (else it may leave now)

    def waiting(self) -> dict[int, int]:
        """Held inputs per partition (for the gauge)."""
        return {p: len(h) for p, h in self._heaps.items()}

    def due(self, partitions: Iterable[int]) -> list[int]:
        """Partitions whose earliest held input has waited its full time: a batch should run."""
        now = self.wall_ms()
        due = [p for p in partitions
               if (heap := self.heap(p))
               and now >= self._leaves_at(heap, p)[0]
               and now - self._ticked.get(p, -self.align_ms) >= self.align_ms]
        for p in due:
            self._ticked[p] = now  # one tick per wait: the tick is already on its way
        return due


def _size(rec: Record) -> int:
    return len(rec.key or b"") + len(rec.value or b"")
