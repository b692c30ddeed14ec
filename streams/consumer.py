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
the fetcher: see `_seek`); after a rebalance the stream partitions are read only
once Faust has cleared the streams' buffers (see `resume_partitions`); and the drain
loop hands a message to the streams without building tasks when that needs no wait
(see `_drain_messages`).

Here: records fetched before a seek are not handed out (the rest of that batch is
re-fetched from where the seek left the position); a gap covers only the offsets
the broker skipped (compaction, transaction markers), never the record after it;
and the committable offset walks up from the committed one through records
handled or skipped, stopping at the first that is neither, and never passes the
app's `commit_floor` (inputs the account stage holds in memory). Registered by
`streams.app` as the transport's consumer class (Faust's `Transport.Consumer`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Container,
    Coroutine,
    Generator,
    Iterable,
    Iterator,
)
from typing import Any

from aiokafka import TopicPartition
from faust.transport.consumer import CONSUMER_FETCHING, ensure_TP, ensure_TPset
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from intervaltree import IntervalTree

from streams.direct import RecordSink


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


def started(coro: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any] | None:
    """Run `coro` until it first waits: None if it finished without waiting, else a
    coroutine that goes on from there (to be awaited or wrapped in a task).

    The continuation hands the awaitable `coro` stopped at to whoever drives it, and
    passes back what it is sent or thrown (a task's `cancel` included): the steps a
    task would have taken, from the second on. An exception `coro` raised before it
    waited is raised here."""
    try:
        waits_on = coro.send(None)
    except StopIteration:
        return None
    return _go_on(coro, waits_on)


async def _go_on(coro: Coroutine[Any, Any, Any], waits_on: Any) -> Any:
    return await _Continued(coro, waits_on)


class _Continued:
    """`await`-able: the rest of a coroutine already started (see `started`)."""

    __slots__ = ("coro", "waits_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waits_on: Any) -> None:
        self.coro, self.waits_on = coro, waits_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waits_on = self.coro, self.waits_on
        while True:
            try:
                sent = yield waits_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # passed on, as a task would
                try:
                    waits_on = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waits_on = coro.send(sent)
                except StopIteration as done:
                    return done.value


def stamp_fetch_requests(consumer: Any) -> dict[Any, int]:
    """Record, per topic-partition, when the fetch request behind its highwater was sent.

    aiokafka stamps a partition's highwater with the time its fetch response was processed
    (`last_poll_timestamp`), on the consumer's thread, which a busy worker's event loop
    keeps from running for tens of ms at a time. The broker read that highwater between
    the request's send and that moment, so "empty as of the stamp" claims more than the
    response knows: the alignment's fetch rule, relying on it with a 100 ms margin, let
    14 and 24 of 8,000 inputs go ahead of earlier ones in 2 of 5 runs of
    tests/integration/test_pipeline.py. The send time is a bound the broker's reading
    cannot precede (it still left 5 in 1 of 4 runs: the rule is off by default). Returns
    the dict it keeps up to date (written on the consumer's thread; a reader only gets
    whole values), empty if this aiokafka has no such method: then no fetch confirms a
    topic empty, and the rule never lets an input go early."""
    requested: dict[Any, int] = {}
    fetcher = getattr(consumer, "_fetcher", None)
    process = getattr(fetcher, "_proc_fetch_request", None)
    if process is None:
        return requested

    async def stamped(assignment: Any, node_id: Any, request: Any) -> Any:
        sent_ms = int(time.time() * 1000)
        tps = [TopicPartition(topic, entry[0])
               for topic, partitions in request.topics for entry in partitions]
        states = [assignment.state_value(tp) for tp in tps]
        before = [getattr(state, "timestamp", None) for state in states]
        try:
            return await process(assignment, node_id, request)
        finally:
            for tp, state, stamp in zip(tps, states, before, strict=True):
                if state is not None and state.timestamp != stamp:  # (updated by this one)
                    requested[tp] = sent_ms

    fetcher._proc_fetch_request = stamped
    return requested


FAIR_SHARE = 1000  # records a partition hands out before the next one's turn (a batch)

class PriorityConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """aiokafka's fetched records with the internal inboxes' first.

    aiokafka hands out buffered records partition by partition in the order their
    fetches arrived, and Faust's drain loop hands a whole batch to the agents before it
    asks for the next. During a backlog the input partitions hold tens of thousands of
    fetched records, and an inbox record (a device answer the account stage waits for)
    fetched after them waited until all of them were handed out: the device stage's first
    batch came 5 s after the account stage's, and its later ones seconds apart (issue
    #5). Here whatever is ready for `priority` topics comes first, and a batch holds at
    most `broker_max_poll_records`, so an inbox record waits for one such batch at most.

    The rest is handed out in turns: a partition hands out up to `FAIR_SHARE` records, then
    goes to the back of aiokafka's buffer. aiokafka drains that buffer in the order fetches
    arrived and leaves a partition it took part of first in line, so each partition's fetch
    (up to 1 MiB, thousands of records) went out whole, over several batches, before the
    next one's. At the start of a 100,000-event backlog the account stage once got 3,000
    device signals of partitions 2 and 3 and none of partition 1's for 6 s, while the
    alignment held every input of partition 1 for that topic and the device stage held
    every device check for partition 1's frontier: 48, 1,054 and 3,070 inputs settled in
    the first 5 s of three of six runs (6,779-7,118 in the others), against 7,125-9,317 in
    five runs in turns (bench/perf.py stage D). Turns of 100 records cost 8% more CPU per
    event (the batches then touch every partition); turns of one batch did not.
    """

    priority: frozenset[str] = frozenset()
    requested: dict[Any, int] = {}  # (replaced at start: `stamp_fetch_requests`)

    async def on_start(self) -> None:
        await super().on_start()
        self.requested = stamp_fetch_requests(self._ensure_consumer())

    async def _fetch_records(self, consumer: Any, active_partitions: set[TP] | None,
                             timeout: float | None = None,
                             max_records: int | None = None) -> Any:
        if active_partitions is None:  # a client-only app: every partition
            return await super()._fetch_records(consumer, None, timeout, max_records)
        live = active_partitions  # Faust's own set, changed on its thread meanwhile
        ready = await super()._fetch_records(consumer, Drainable(live, self.priority), 0, None)
        if not ready:  # as aiokafka: wait up to `timeout` for any partition
            return await self._in_turns(consumer, Drainable(live), timeout, max_records)
        rest = await self._in_turns(consumer, Drainable(live, self.priority, inside=False),
                                    0, max_records)
        return {**ready, **rest}

    async def _in_turns(self, consumer: Any, partitions: Drainable, timeout: float | None,
                        max_records: int | None) -> dict[Any, list[Any]]:
        """Up to `max_records`, `FAIR_SHARE` per partition at a time: after each take the
        partition goes to the back of aiokafka's buffer (`fetcher._records`, in order)."""
        if max_records is None:  # (everything buffered: no turns to take)
            return await super()._fetch_records(consumer, partitions, timeout, None)
        buffered = getattr(getattr(consumer, "_fetcher", None), "_records", None)
        out: dict[Any, list[Any]] = {}
        left = max_records
        while left > 0:
            got = await super()._fetch_records(consumer, partitions, timeout,
                                               min(FAIR_SHARE, left))
            timeout = 0  # (only the first take waits for records)
            if not got:
                break
            for tp, records in got.items():
                out.setdefault(tp, []).extend(records)
                left -= len(records)
                if buffered is not None and tp in buffered:
                    buffered.move_to_end(tp)
        return out


class Drainable:
    """The partitions a fetch may hand out records of, decided when the records arrive.

    Faust passes its own set of active partitions, which pauses change while the fetch
    waits for data, and aiokafka hands out every partition's records when that set is
    empty. After a restart's recovery Faust pauses the changelog partitions, the set a
    waiting fetch holds goes empty, and it drained the stream partitions then held back
    for the seek to the committed offsets: Faust skipped those records as inactive, the
    fetch position had passed them, and they were never handled in that run (their
    offsets then showed up as a gap). This view is never empty and reads the live set."""

    __slots__ = ("inside", "live", "topics")

    def __init__(self, live: set[TP], topics: Container[str] | None = None, *,
                 inside: bool = True) -> None:
        self.live, self.topics, self.inside = live, topics, inside

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        if tp not in self.live:
            return False
        topic = tp.topic  # type: ignore[attr-defined]
        return self.topics is None or (topic in self.topics) == self.inside

    def __iter__(self) -> Iterator[TP]:
        return (tp for tp in list(self.live) if tp in self)


class WardenConsumer(faust_aiokafka.Consumer):
    """See the module docstring: seek-safe hand-out and exact commit offsets."""

    _seeks = 0  # bumped around every seek: a batch fetched across one is stale
    priority_topics: frozenset[str] = frozenset()  # set by the app: its inboxes
    # stream partitions resumed during a rebalance, read once the flow resumes
    _resume_after_flow: frozenset[TP] = frozenset()
    # told of every run of offsets the drain loop passed without handing out (set by the app)
    on_skipped: Callable[[TP, int, int], None] | None = None
    # the lowest offset of a partition still needed after a crash though handled (acked):
    # inputs the account stage holds in memory for alignment (set by the app)
    commit_floor: Callable[[TP], int | None] | None = None
    # topic -> the sink its records go to instead of Faust's streams (set by the app)
    sinks: dict[str, RecordSink] = {}

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

    async def _drain_messages(self, fetcher: Any) -> None:
        """Faust's drain loop (faust-streaming 0.15's `Consumer._drain_messages`, same steps),
        except that a message whose hand-off to the streams needs no wait costs no task.

        Faust races each message's hand-off (`callback`: the conductor puts it on its
        streams' queues) against `suspend_flow` with `wait_first`, which builds four tasks
        and an `asyncio.wait` per message, also when the hand-off never waits (issue #5:
        Warden's worker spent 13% less CPU per event without them; a no-op agent ran
        10-16% faster, bench/perf.py's stage Bw). Here the hand-off runs until it first
        waits (`started`); only one that waits (a full queue, flow control, a full
        producer buffer) is raced as before, and cancelled when the flow is suspended.

        Records of a topic with a sink (`sinks`, streams/direct.py) are appended to it
        instead, tracked as unacknowledged as the conductor would; while the flow is
        suspended they are dropped as a cancelled hand-off is, and a full sink is waited
        for, raced against the flow's suspension like a hand-off."""
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        suspended = self.suspend_flow.is_set
        flow_active = self.app.flow_control.is_active
        sink_of = self.sinks.get
        track = self.track_message
        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                ait = getmany(timeout=1.0)
                await self.sleep(0)  # getmany can return at once, in a loop: let others run
                if not self.should_stop:
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0
                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            sink = sink_of(message.topic)
                            if sink is not None:  # straight to the stage (streams/direct.py)
                                while not (suspended() or not flow_active()):
                                    if sink.put(message):
                                        track(message)
                                        break
                                    await self.wait_first(sink.room(), self.suspend_flow.wait())
                                    if consumer_should_stop():
                                        break
                                # (suspended: dropped, as a cancelled hand-off below; read
                                # again from the committed offset after the rebalance)
                                set_read_offset(tp, offset)
                                continue
                            handoff = callback(message)
                            if suspended():
                                await self.wait_first(handoff, self.suspend_flow.wait())
                            else:
                                waiting = started(handoff)
                                if waiting is not None:
                                    await self.wait_first(waiting, self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Faust forgets the revoked partitions' acknowledged offsets first, then waits for
        the batches under way (`wait_empty`) and commits what they acked. Whatever those
        acked past that commit (inputs held for alignment, behind `commit_floor`) stayed
        here: once the assignment had reset the floors, a commit during the recovery that
        follows walked through them, and the seek to the committed offsets then skipped
        held inputs the worker had dropped (two room creations of one account were never
        applied in tests/integration/test_two_workers.py). The partitions are read again
        from the committed offsets, so nothing acknowledged before that is kept."""
        await super().on_partitions_revoked(revoked)
        for tp in revoked:
            self._acked.pop(tp, None)
            self._acked_index.pop(tp, None)
            self._gap.pop(tp, None)

    def untrack(self, messages: Iterable[Any]) -> None:
        """Records dropped before any stage took them (`RecordSink.clear`): not acked, so
        not committed, and read again from the committed offset; no longer waited for."""
        self._unacked_messages.difference_update(messages)

    def ack_taken(self, message: Any) -> None:
        """Acknowledge a record a sink handed to its stage, once the stage has handled it
        (with the sensor hook the stream ran when it acked an event)."""
        self.ack(message)
        self.app.sensors.on_message_out(message.tp, message.offset, message)

    def resume_partitions(self, tps: Iterable[TP]) -> None:
        """Stream partitions resumed during a rebalance wait for `resume_flow`.

        Faust resumes them, seeks them to the committed offsets, then resumes the flow,
        which empties every stream's buffer. Records the drain loop handed out in between
        were dropped with the buffer, after the fetch position and the read offset had
        passed them: the worker went on from the records after them, never acknowledged
        them (its commits stalled there), and the next start re-read and applied them late,
        out of event-time order (a kill -9 restart test decided unlike replay 1 run in 9).
        Held back until then, they are first fetched from the committed offsets."""
        tps = ensure_TPset(tps)
        if self.app.rebalancing:
            streams = {tp for tp in tps if not self._is_changelog_tp(tp)}
            self._resume_after_flow = self._resume_after_flow | streams
            tps -= streams
        super().resume_partitions(tps)

    def pause_partitions(self, tps: Iterable[TP]) -> None:
        tps = ensure_TPset(tps)
        self._resume_after_flow = self._resume_after_flow - tps
        super().pause_partitions(tps)

    def resume_flow(self) -> None:
        """Faust calls this right after resuming the flow, i.e. after the streams' buffers
        were emptied: the stream partitions held back by `resume_partitions` are read now."""
        super().resume_flow()
        held, self._resume_after_flow = self._resume_after_flow, frozenset()
        if held:
            super().resume_partitions(held)

    def on_buffer_drop(self, tp: TP) -> None:
        """Faust makes a partition active again once its stream's buffer has drained, even
        when it was paused meanwhile (a rebalance empties the buffers, and the next read of
        an empty buffer reports it drained): its records were then fetched and handed out
        during recovery, to be dropped with the buffers when the flow resumes."""
        if tp in self._paused_partitions or tp in self._resume_after_flow:
            self._buffered_partitions.discard(tp)
            return
        super().on_buffer_drop(tp)

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

    def fetched_at(self, tp: TP) -> int | None:
        """Wall time (ms) of the last fetch response for `tp` (aiokafka sets it, with the
        highwater, for every partition the fetch covered, records or not; None: none yet).
        Read before `highwater`: that highwater is then at least as new as this fetch."""
        return self._thread._ensure_consumer().last_poll_timestamp(tp)

    def fetch_requested_at(self, tp: TP) -> int | None:
        """Wall time (ms) the fetch request behind `tp`'s highwater was sent (None: none
        yet): the broker read that highwater no earlier (`stamp_fetch_requests`). Read
        before `highwater`, as `fetched_at`."""
        return self._thread.requested.get(TopicPartition(tp.topic, tp.partition))

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
        """Offsets the drain loop passed without handing them out, which the commit then
        passes over. Only compaction or transaction markers make such runs, and Warden's
        topics have neither: a run reported here means records this worker never handled
        (each lost-record bug in `resume_partitions` and `Drainable` showed up as one)."""
        # Faust passes the offset of the record that revealed the gap as `offset_to`
        # (inclusive): that record is not skipped, it is about to be handled.
        if self.on_skipped is not None:
            self.on_skipped(tp, offset_from, offset_to - 1)
        await super()._add_gap(tp, offset_from, offset_to - 1)

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        skipped = self._gap[tp]
        offset = committable_offset(self._committed_offset[tp], acked, skipped)
        if offset is None:
            return None
        floor = self.commit_floor(tp) if self.commit_floor is not None else None
        if floor is not None and floor < offset:
            offset = floor  # (the acked offsets from it up stay, for the next commit's walk)
            committed = self._committed_offset[tp]
            if committed is not None and offset <= committed:
                return None
        acked[:] = [o for o in acked if o >= offset]
        self._acked_index[tp] = {o for o in self._acked_index[tp] if o >= offset}
        skipped.chop(0, offset)
        return offset


class WardenTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with `WardenConsumer`."""

    Consumer = WardenConsumer
