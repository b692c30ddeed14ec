"""Faust's aiokafka consumer with commit bookkeeping that never passes an unhandled record.

Three faults in faust-streaming 0.15's offset tracking, each seen in the kill -9
restart tests (a restarted worker's committed offset crept forward one record per
commit, hundreds behind what it had handled):

1. A seek (Faust seeks back to the committed offsets after every recovery and
   rebalance) can land while the drain loop is still handing out records fetched
   before it. The next stale record then looks like a jump from the seek target,
   and the offsets in between are recorded as a gap, i.e. as done: records still
   ahead in the stream count as acknowledged, and once re-fetched they are
   acknowledged again, so the acknowledged list holds duplicates and Faust's
   "first run of consecutive offsets" advances by one per commit
   (robinhood/faust#559, #625).
2. A gap interval includes the offset of the record that revealed it, so that
   record counts as done before it is handled.
3. The head check lets a commit pass the record at the committed offset itself
   when only it is missing (faust-streaming/faust#606).

Also, seeks run on the consumer's thread (Faust runs them on the caller's, racing
the fetcher: see `_seek`).

Here: records fetched before a seek are not handed out (the rest of that batch is
re-fetched from where the seek left the position); a gap covers only the offsets
the broker skipped (compaction, transaction markers), never the record after it;
and the committable offset walks up from the committed one through records
handled or skipped, stopping at the first that is neither. Registered by
`streams.app` as the transport's consumer class (Faust's `Transport.Consumer`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Container, Iterable
from typing import Any

from faust.transport.consumer import ensure_TP
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from intervaltree import IntervalTree


def committable_offset(committed: int | None, acked: Iterable[int],
                       skipped: IntervalTree) -> int | None:
    """The offset to commit next: one past the run of offsets, from `committed` up, that
    were each handled (`acked`) or never delivered by the broker (`skipped`); None when
    that run is empty. Without a committed offset yet, the run starts at the lowest
    acknowledged one (Faust's rule for a group's first commit)."""
    done = set(acked)
    if not done:
        return None
    offset = start = committed if committed is not None else min(done)
    while True:
        if offset in done:
            offset += 1
            continue
        covering = skipped[offset]
        if covering:
            offset = max(interval.end for interval in covering)
            continue
        break
    return offset if offset > start else None


class PriorityConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """aiokafka's fetched records with the internal inboxes' first.

    aiokafka hands out buffered records partition by partition in the order their
    fetches arrived, and Faust's drain loop hands a whole batch to the agents before it
    asks for the next. During a backlog the input partitions hold tens of thousands of
    fetched records, and an inbox record (a device answer the account stage waits for)
    fetched after them waited until all of them were handed out: the device stage's first
    batch came 5 s after the account stage's, and its later ones seconds apart (issue
    #5). Here whatever is ready for `priority` topics comes first, and a batch holds at
    most `broker_max_poll_records`, so an inbox record waits for one such batch at most."""

    priority: frozenset[str] = frozenset()

    async def _fetch_records(self, consumer: Any, active_partitions: set[TP],
                             timeout: float | None = None,
                             max_records: int | None = None) -> Any:
        first = {tp for tp in active_partitions if tp.topic in self.priority}
        ready = await super()._fetch_records(consumer, first, 0, None) if first else None
        if not ready:  # as aiokafka: wait up to `timeout` for any partition
            return await super()._fetch_records(consumer, active_partitions, timeout,
                                                max_records)
        rest = await super()._fetch_records(consumer, active_partitions - first, 0,
                                            max_records)
        return {**ready, **rest}


class WardenConsumer(faust_aiokafka.Consumer):
    """See the module docstring: seek-safe hand-out and exact commit offsets."""

    _seeks = 0  # bumped around every seek: a batch fetched across one is stale
    priority_topics: frozenset[str] = frozenset()  # set by the app: its inboxes

    def _new_consumer_thread(self) -> PriorityConsumerThread:
        thread = PriorityConsumerThread(self, loop=self.loop, beacon=self.beacon)
        thread.priority = self.priority_topics
        return thread

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        seeks = self._seeks
        batch = super().getmany(timeout)
        async for tp, message in batch:
            if self._seeks != seeks:
                await self._refetch_from(tp, message, batch)
                return
            yield tp, message

    async def _refetch_from(self, tp: TP, message: Any,
                            rest: AsyncIterator[tuple[TP, Any]]) -> None:
        """A seek ran while this batch was handed out: drop the rest of it, and seek each of its
        partitions back to its first dropped record unless the position is already at or
        before it (the seek went back further)."""
        first = {tp: message.offset}
        async for other, later in rest:
            first.setdefault(other, later.offset)
        for partition, offset in first.items():
            if partition not in self.assignment():
                continue  # revoked meanwhile: its next owner starts from the committed offset
            position = await self.position(partition)
            if position is None or position > offset:
                await self.seek(partition, offset)

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets, bracketed for `getmany`; the read offset
        is set one below the seek target (the last offset read, as Faust's drain loop reads
        it), so a broker-skipped offset right at the target still counts as a gap."""
        self._seeks += 1
        try:
            committed = await self.seek_to_committed()
        finally:
            self._seeks += 1
        for tp, offset in committed.items():
            tp = ensure_TP(tp)
            has_offset = offset is not None and offset > 0
            self._read_offset[tp] = offset - 1 if has_offset else None
            if offset is not None:
                self._committed_offset[tp] = offset if has_offset else None

    async def _seek(self, partition: TP, offset: int) -> None:
        """aiokafka's seek, run on the consumer's own thread. Faust calls it from the
        event loop's thread, where it drops the partition's fetched records while the
        consumer thread may be handing them out: `KeyError` in aiokafka's
        `Fetcher.fetched_records`, and the worker stopped (seen in bench/perf.py's
        idle-memory phase, where back-pressure holds partitions back and seeks them)."""
        thread = self._thread
        await thread.call_thread(thread._ensure_consumer().seek, partition, offset)

    async def seek(self, partition: TP, offset: int) -> None:
        self._seeks += 1
        try:
            await super().seek(partition, offset)
        finally:
            self._seeks += 1
        self._read_offset[partition] = offset - 1 if offset else None

    async def hold_back(self, tps: Iterable[TP]) -> None:
        """Pause fetching `tps` without losing what was fetched for them already.

        Faust's `pause_partitions` makes the drain loop skip the paused partitions' records
        still in the batch it is handing out, whose offsets the fetch position has passed;
        so each is also sought back to the record after the last one handed out (one being
        handed out right now may come again: inputs are deduplicated by id)."""
        tps = {ensure_TP(tp) for tp in tps}
        self.pause_partitions(tps)
        for tp in tps:
            last = self._read_offset.get(tp)
            if last is not None:
                await self.seek(tp, last + 1)
            elif self._committed_offset.get(tp) is not None:
                await self.seek(tp, self._committed_offset[tp])

    def has_unread(self, topics: Container[str]) -> bool:
        """Whether a partition of `topics` that is being read (assigned, not paused) has
        records past the last one the drain loop handed out, by the high-water mark of
        its last fetch: more is coming, whether or not it has been fetched yet."""
        paused = self._paused_partitions
        for tp in self.assignment():
            if tp.topic not in topics or tp in paused:
                continue
            high = self.highwater(tp)
            if not high:
                continue
            read = self._read_offset.get(tp)
            if read is None or read + 1 < high:
                return True
        return False

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        # Faust passes the offset of the record that revealed the gap as `offset_to`
        # (inclusive): that record is not skipped, it is about to be handled.
        await super()._add_gap(tp, offset_from, offset_to - 1)

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        skipped = self._gap[tp]
        offset = committable_offset(self._committed_offset[tp], acked, skipped)
        if offset is None:
            return None
        acked[:] = [o for o in acked if o >= offset]
        self._acked_index[tp] = {o for o in self._acked_index[tp] if o >= offset}
        skipped.chop(0, offset)
        return offset


class WardenTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with `WardenConsumer`."""

    Consumer = WardenConsumer
