"""The committable offset (streams/consumer.py): never past a record not yet handled."""

import asyncio
from collections import defaultdict
from types import SimpleNamespace
from weakref import WeakSet

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from intervaltree import IntervalTree

from streams.consumer import (
    FAIR_SHARE,
    PriorityConsumerThread,
    WardenConsumer,
    committable_offset,
    started,
)
from streams.direct import RecordSink


def gaps(*spans: tuple[int, int]) -> IntervalTree:
    tree = IntervalTree()
    for begin, end in spans:
        tree.addi(begin, end)
    return tree


def test_a_run_of_handled_records_is_committed_up_to_its_end():
    assert committable_offset(10, [10, 11, 12], gaps()) == 13


def test_nothing_is_committed_while_the_record_at_the_committed_offset_is_in_flight():
    # faust-streaming#606: Faust committed 14 here, losing record 10 on a crash
    assert committable_offset(10, [11, 12, 13], gaps()) is None


def test_the_commit_stops_at_the_first_record_still_in_flight():
    assert committable_offset(10, [10, 11, 13, 14], gaps()) == 12


def test_acknowledging_a_record_twice_does_not_stall_the_commit():
    # robinhood/faust#559: duplicates made Faust advance one offset per commit
    assert committable_offset(10, [10, 11, 11, 12, 12, 13], gaps()) == 14


def test_offsets_the_broker_skipped_are_passed_over():
    # compaction or a transaction marker: 12 and 13 were never delivered
    assert committable_offset(10, [10, 11, 14], gaps((12, 14))) == 15


def test_a_skipped_offset_at_the_committed_offset_is_passed_over():
    assert committable_offset(10, [11, 12], gaps((10, 11))) == 13


def test_a_skip_ahead_of_an_in_flight_record_does_not_pass_it():
    assert committable_offset(10, [10], gaps((12, 14))) == 11


def test_nothing_new_means_no_commit():
    assert committable_offset(10, [], gaps()) is None
    assert committable_offset(10, [8, 9], gaps()) is None


def test_a_first_commit_starts_at_the_lowest_acknowledged_offset():
    assert committable_offset(None, [5, 6, 7], gaps()) == 8


def consumer_with_acks(tp: TP, committed: int | None, acked: list[int],
                       floor: int | None) -> WardenConsumer:
    consumer = object.__new__(WardenConsumer)
    consumer._acked = {tp: list(acked)}
    consumer._acked_index = {tp: set(acked)}
    consumer._gap = {tp: IntervalTree()}
    consumer._committed_offset = {tp: committed}
    consumer.commit_floor = lambda t: floor if t == tp else None
    return consumer


def test_the_commit_stops_at_the_apps_floor_and_walks_on_from_it_once_the_floor_moves():
    """Inputs the account stage holds in memory for alignment are handled (acked) but not
    applied: the commit stops at the earliest of them (streams/alignment.py)."""
    tp = TP("friend-adds", 0)
    consumer = consumer_with_acks(tp, 10, [10, 11, 12, 13, 14], floor=12)
    assert consumer._new_offset(tp) == 12
    consumer._committed_offset[tp] = 12
    assert consumer._acked[tp] == [12, 13, 14]  # kept, for when the floor moves
    assert consumer._new_offset(tp) is None  # no further while it stays
    consumer.commit_floor = lambda t: None
    assert consumer._new_offset(tp) == 15


def test_a_floor_at_or_below_the_committed_offset_commits_nothing():
    tp = TP("friend-adds", 0)
    assert consumer_with_acks(tp, 10, [10, 11], floor=10)._new_offset(tp) is None
    assert consumer_with_acks(tp, 10, [10, 11], floor=20)._new_offset(tp) == 12


def test_what_the_batches_under_way_acked_past_the_revocations_commit_is_forgotten(
        monkeypatch):
    """Faust forgets a revoked partition's acks, then waits for the batch under way, which
    acks its records (an input it held for alignment at 12 among them), and commits up to
    the floor. The assignment then resets the floors (the partition is read again from
    the committed offset): a commit during recovery must not walk through 12..14."""
    tp = TP("room-creations", 2)
    consumer = consumer_with_acks(tp, 10, [10, 11], floor=None)
    consumer._committed_offset = defaultdict(lambda: None, consumer._committed_offset)
    floors = {tp: 12}
    consumer.commit_floor = floors.get

    async def fausts_revocation(self, revoked):
        for t in revoked:  # (faust's Consumer.on_partitions_revoked)
            self._acked.pop(t, None)
            self._acked_index.pop(t, None)
            self._committed_offset.pop(t, None)
        self._acked[tp], self._acked_index[tp] = [12, 13, 14], {12, 13, 14}  # the batch's
        assert self._new_offset(tp) == 12  # the commit in `wait_empty`
        self._committed_offset[tp] = 12

    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_revoked", fausts_revocation)
    asyncio.run(consumer.on_partitions_revoked({tp}))
    floors.clear()  # the assignment: `AccountStage.reset_commit_floors`
    consumer._acked.setdefault(tp, [])  # (faust's are defaultdicts)
    consumer._acked_index.setdefault(tp, set())
    consumer._gap.setdefault(tp, IntervalTree())
    assert consumer._new_offset(tp) is None  # 12 is read again from the committed offset


# --- records fetched before a seek are not handed out ------------------------------------
TOPIC = TP("friend-adds", 0)


class FakeMessage:
    def __init__(self, offset: int) -> None:
        self.offset = offset


def consumer_over(monkeypatch, offsets: list[int], *, seek_after: int, position: int):
    """A WardenConsumer whose fetched batch holds `offsets`; a seek lands after `seek_after`
    records were handed out, leaving the fetch position at `position`."""
    consumer = object.__new__(WardenConsumer)
    seeks: list[tuple[TP, int]] = []

    async def batch(self, timeout):
        for n, offset in enumerate(offsets):
            if n == seek_after:
                self._seeks += 2  # what perform_seek does around the seek
            yield TOPIC, FakeMessage(offset)

    async def position_of(tp):
        return position

    async def seek(tp, offset):
        seeks.append((tp, offset))

    monkeypatch.setattr(faust_aiokafka.Consumer, "getmany", batch)
    consumer.position = position_of
    consumer.seek = seek
    consumer.assignment = lambda: {TOPIC}
    return consumer, seeks


async def handed_out(consumer) -> list[int]:
    return [m.offset async for _, m in consumer.getmany(timeout=1.0)]


@pytest.mark.asyncio
async def test_a_seek_back_drops_the_rest_of_the_batch_it_will_fetch_again(monkeypatch):
    consumer, seeks = consumer_over(monkeypatch, [5, 6, 7, 8], seek_after=2, position=3)
    assert await handed_out(consumer) == [5, 6]
    assert seeks == []  # the position is already back at 3: 7 and 8 come again


@pytest.mark.asyncio
async def test_records_fetched_after_the_seek_are_fetched_again_not_lost(monkeypatch):
    consumer, seeks = consumer_over(monkeypatch, [5, 6, 7, 8], seek_after=2, position=9)
    assert await handed_out(consumer) == [5, 6]
    assert seeks == [(TOPIC, 7)]


@pytest.mark.asyncio
async def test_a_batch_without_a_seek_is_handed_out_whole(monkeypatch):
    consumer, seeks = consumer_over(monkeypatch, [5, 6, 7], seek_after=99, position=8)
    assert await handed_out(consumer) == [5, 6, 7]
    assert seeks == []


# --- pausing for back-pressure loses nothing already fetched ------------------------------
@pytest.mark.asyncio
async def test_holding_back_a_partition_seeks_it_to_the_record_after_the_last_handed_out():
    consumer = object.__new__(WardenConsumer)
    paused: list[set[TP]] = []
    seeks: list[tuple[TP, int]] = []
    other = TP("friend-adds", 1)
    consumer.pause_partitions = paused.append
    consumer._read_offset = {TOPIC: 41}
    consumer._committed_offset = {other: 7}

    async def seek(tp, offset):
        seeks.append((tp, offset))

    consumer.seek = seek
    await consumer.hold_back([TOPIC, other])
    assert paused == [{TOPIC, other}]
    # 42 onwards may sit in the batch being handed out, which skips paused partitions;
    # nothing handed out yet since the last seek: back to the committed offset
    assert sorted(seeks) == [(TOPIC, 42), (other, 7)]


# --- whether more is coming for a stage (streams/direct.py) --------------------------------
def consumer_reading(read: dict[TP, int | None], high: dict[TP, int],
                     paused: set[TP] = frozenset()) -> WardenConsumer:
    consumer = object.__new__(WardenConsumer)
    consumer.assignment = lambda: set(high)
    consumer.highwater = high.get
    consumer._read_offset = read
    consumer._paused_partitions = set(paused)
    return consumer


def test_a_partition_read_up_to_its_high_water_mark_has_nothing_unread():
    assert not consumer_reading({TOPIC: 41}, {TOPIC: 42}).has_unread({"friend-adds"})


def test_a_partition_behind_its_high_water_mark_has_records_unread():
    assert consumer_reading({TOPIC: 40}, {TOPIC: 42}).has_unread({"friend-adds"})
    assert consumer_reading({}, {TOPIC: 42}).has_unread({"friend-adds"})  # none read yet


def test_paused_partitions_and_other_topics_do_not_count():
    behind = {TOPIC: 42}
    assert not consumer_reading({TOPIC: 1}, behind, paused={TOPIC}).has_unread({"friend-adds"})
    assert not consumer_reading({TOPIC: 1}, behind).has_unread({"room-creations"})


def test_an_empty_or_unfetched_partition_has_nothing_unread():
    assert not consumer_reading({}, {TOPIC: 0}).has_unread({"friend-adds"})
    assert not consumer_reading({}, {TOPIC: None}).has_unread({"friend-adds"})


@pytest.mark.asyncio
async def test_a_seek_runs_on_the_consumer_thread_not_beside_its_fetcher():
    calls: list[tuple[object, tuple]] = []

    class Thread:
        class Client:
            def seek(self, tp, offset):
                raise AssertionError("called on the event loop's thread")

        client = Client()

        def _ensure_consumer(self):
            return self.client

        async def call_thread(self, fn, *args):
            calls.append((fn, args))

    consumer = object.__new__(WardenConsumer)
    consumer._thread = Thread()
    consumer._read_offset = {}
    consumer.log = SimpleNamespace(dev=lambda *args: None)
    await consumer.seek(TOPIC, 42)
    assert calls == [(consumer._thread.client.seek, (TOPIC, 42))]
    assert consumer._read_offset[TOPIC] == 41


# --- the inboxes' records before the input backlog's ---------------------------------------
INBOX = TP("warden-device-inbox", 0)
CHANGELOG = TP("warden-accounts-changelog", 0)


def thread_over(monkeypatch, buffered: dict[TP, list[int]], *, while_waiting=lambda: None):
    """A PriorityConsumerThread whose fetcher holds `buffered`; returns it and its calls.
    The fetcher drains as aiokafka's does: the partitions in the set it was given when the
    records arrive (after `while_waiting`, for a fetch that waits), every one if it is empty."""
    calls: list[tuple[set[TP], float | None, int | None]] = []

    async def fetched(self, consumer, partitions, timeout=None, max_records=None):
        calls.append((set(partitions), timeout, max_records))
        if timeout:
            while_waiting()
        out = {}
        for tp in list(buffered):  # as aiokafka's: in order, up to `max_records` in all
            if not buffered[tp] or (partitions and tp not in partitions):
                continue
            out[tp] = buffered[tp][:max_records]
            buffered[tp] = buffered[tp][len(out[tp]):]
            if max_records is not None:
                max_records -= len(out[tp])
                if not max_records:
                    break
        return out

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "_fetch_records", fetched)
    thread = object.__new__(PriorityConsumerThread)
    thread.priority = frozenset({INBOX.topic})
    return thread, calls


@pytest.mark.asyncio
async def test_ready_inbox_records_come_first_and_the_backlog_is_not_waited_for(monkeypatch):
    thread, calls = thread_over(monkeypatch, {TOPIC: [1, 2], INBOX: [7]})
    records = await thread._fetch_records(None, {TOPIC, INBOX}, timeout=1.0, max_records=500)
    assert list(records) == [INBOX, TOPIC]
    assert calls[:2] == [({INBOX}, 0, None), ({TOPIC}, 0, min(FAIR_SHARE, 500))]


@pytest.mark.asyncio
async def test_with_no_inbox_record_ready_it_waits_for_any_partition_as_aiokafka(monkeypatch):
    thread, calls = thread_over(monkeypatch, {TOPIC: [1, 2]})
    records = await thread._fetch_records(None, {TOPIC, INBOX}, timeout=1.0, max_records=500)
    assert records == {TOPIC: [1, 2]}
    assert calls[1] == ({TOPIC, INBOX}, 1.0, min(FAIR_SHARE, 500))  # (then more, not waiting)
    assert all(timeout == 0 for _, timeout, _ in calls[2:])


@pytest.mark.asyncio
async def test_with_only_inbox_partitions_active_nothing_else_is_drained(monkeypatch):
    thread, _ = thread_over(monkeypatch, {TOPIC: [1, 2], INBOX: [7]})
    records = await thread._fetch_records(None, {INBOX}, timeout=1.0, max_records=500)
    assert records == {INBOX: [7]}


@pytest.mark.asyncio
async def test_a_fetch_whose_partitions_are_all_paused_while_it_waits_drains_nothing(monkeypatch):
    """Faust's live set of active partitions, emptied by a pause during the wait (after a
    restart's recovery), read as "every partition" by aiokafka: the held-back input
    partition's records were drained, skipped by Faust as inactive, and lost."""
    active = {CHANGELOG}
    thread, _ = thread_over(monkeypatch, {TOPIC: [1, 2], CHANGELOG: []},
                            while_waiting=active.clear)
    assert await thread._fetch_records(None, active, timeout=1.0, max_records=500) == {}


# --- after a rebalance, stream partitions are read once Faust has emptied the buffers ------
def consumer_in(*, rebalancing: bool) -> WardenConsumer:
    consumer = object.__new__(WardenConsumer)
    consumer.app = SimpleNamespace(rebalancing=rebalancing,
                                   tables=SimpleNamespace(changelog_topics={CHANGELOG.topic}))
    consumer._active_partitions = set()
    consumer._paused_partitions = {TOPIC, INBOX, CHANGELOG}
    consumer._buffered_partitions = set()
    consumer.can_resume_flow = SimpleNamespace(set=lambda: None)
    consumer.suspend_flow = SimpleNamespace(clear=lambda: None)
    return consumer


def test_stream_partitions_resumed_during_a_rebalance_wait_for_the_flow():
    """Faust resumes them, seeks to the committed offsets, then resumes the flow, which
    empties the streams' buffers: records handed out before that were lost with them."""
    consumer = consumer_in(rebalancing=True)
    consumer.resume_partitions({TOPIC, INBOX, CHANGELOG})
    assert consumer._active_partitions == {CHANGELOG}  # recovery reads it now
    consumer.resume_flow()
    assert consumer._active_partitions == {TOPIC, INBOX, CHANGELOG}
    assert consumer._paused_partitions == set()


def test_outside_a_rebalance_partitions_resume_at_once():
    consumer = consumer_in(rebalancing=False)
    consumer.resume_partitions({TOPIC})
    assert consumer._active_partitions == {TOPIC}


def test_a_partition_paused_again_before_the_flow_resumes_stays_paused():
    consumer = consumer_in(rebalancing=True)
    consumer.resume_partitions({TOPIC, INBOX})
    consumer.pause_partitions({TOPIC})  # e.g. the next rebalance began
    consumer.resume_flow()
    assert consumer._active_partitions == {INBOX}
    assert TOPIC in consumer._paused_partitions


def test_a_drained_buffer_does_not_reactivate_a_paused_partition():
    consumer = consumer_in(rebalancing=True)
    consumer._buffered_partitions = {TOPIC, INBOX}
    consumer._paused_partitions = {TOPIC}
    consumer.on_buffer_drop(TOPIC)
    consumer.on_buffer_drop(INBOX)
    assert consumer._active_partitions == {INBOX}
    assert consumer._buffered_partitions == set()


# --- offsets passed without being handed out are reported ----------------------------------
@pytest.mark.asyncio
async def test_a_run_of_offsets_the_drain_loop_passed_is_reported_and_skipped(monkeypatch):
    recorded: list[tuple[TP, int, int]] = []

    async def add_gap(self, tp, offset_from, offset_to):
        recorded.append((tp, offset_from, offset_to))

    monkeypatch.setattr(faust_aiokafka.Consumer, "_add_gap", add_gap)
    consumer = object.__new__(WardenConsumer)
    reported: list[tuple[TP, int, int]] = []
    consumer.on_skipped = lambda tp, first, last: reported.append((tp, first, last))
    # Faust's drain loop: read up to 9, then 15 arrives: 10..14 were never handed out
    await consumer._add_gap(TOPIC, 10, 15)
    assert reported == [(TOPIC, 10, 14)]
    assert recorded == [(TOPIC, 10, 14)]  # 15 itself is about to be handled


# --- the drain loop's hand-off: a task only when it waits (`started`) ----------------------

def test_a_hand_off_that_never_waits_finishes_at_once_without_a_task():
    delivered = []

    async def handoff(message):
        delivered.append(message)

    async def go():
        tasks = len(asyncio.all_tasks())
        assert started(handoff("m1")) is None
        assert delivered == ["m1"]
        assert len(asyncio.all_tasks()) == tasks

    asyncio.run(go())


def test_a_hand_off_that_waits_goes_on_where_it_stopped_once_what_it_waits_for_is_done():
    steps = []

    async def handoff(space):
        steps.append("queued?")
        got = await space  # a full queue: waits for room
        await asyncio.sleep(0)  # a bare yield on the way
        steps.append(got)
        return "delivered"

    async def go():
        space = asyncio.get_running_loop().create_future()
        rest = started(handoff(space))
        assert rest is not None and steps == ["queued?"]
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        assert not task.done()
        space.set_result("room")
        assert await task == "delivered"
        assert steps == ["queued?", "room"]

    asyncio.run(go())


def test_a_waiting_hand_off_cancelled_when_the_flow_is_suspended_sees_the_cancellation():
    cleaned = []

    async def handoff(space):
        try:
            await space
        finally:
            cleaned.append("queue put abandoned")

    async def go():
        space = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(started(handoff(space)))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert cleaned == ["queue put abandoned"]
        assert space.cancelled()  # as a task awaiting it directly would have cancelled it

    asyncio.run(go())


def test_errors_reach_the_hand_off_and_the_drain_loop_as_they_would_through_a_task():

    async def fails_at_once():
        raise ValueError("undecodable")

    async def fails_later(space):
        return await space

    async def go():
        with pytest.raises(ValueError, match="undecodable"):
            started(fails_at_once())
        space = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(started(fails_later(space)))
        await asyncio.sleep(0)
        space.set_exception(KeyError("gone"))
        with pytest.raises(KeyError):
            await task

    asyncio.run(go())


def one_fetch(fetched, stopped):
    """A `getmany` that hands out `fetched` (tp, message) pairs once, then stops the loop."""
    calls = 0

    async def getmany(timeout):
        nonlocal calls
        calls += 1
        if calls > 1:
            stopped.set()
            return
        for item in fetched:
            yield item

    return getmany


def drain_loop_consumer(*, callback, getmany, stopped, read_offset, suspend_flow, wait_first,
                        sinks=None, track_message=lambda _m: None, flow_active=lambda: True):
    """What `WardenConsumer._drain_messages` reads of its consumer."""
    async def sleep(_seconds):
        await asyncio.sleep(0)

    return SimpleNamespace(
        callback=callback, getmany=getmany, _stopped=stopped, _read_offset=read_offset,
        diag=SimpleNamespace(set_flag=lambda _f: None, unset_flag=lambda _f: None),
        _commit_every=None, app=SimpleNamespace(
            topics=SimpleNamespace(acks_enabled_for=lambda _topic: True),
            flow_control=SimpleNamespace(is_active=flow_active)),
        sinks=sinks or {}, track_message=track_message,
        suspend_flow=suspend_flow, sleep=sleep, should_stop=False, wait_first=wait_first,
        consumer_stopped_errors=(), transport=SimpleNamespace(app=SimpleNamespace(
            should_stop=False)),
        log=SimpleNamespace(info=lambda *_: None, exception=lambda *_: None))


def test_the_drain_loop_hands_messages_over_without_a_race_until_one_waits():
    """Messages 0 and 1 go to the streams at once; 2 waits (a full buffer) until a rebalance
    suspends the flow, which cancels its hand-off; 3 then comes while the flow is suspended.
    As in Faust's own loop, both still count as read (the seek after recovery re-reads them)."""
    tp = TP("warden-friend-adds", 0)
    messages = [SimpleNamespace(offset=o, topic=tp.topic) for o in range(4)]
    delivered, raced, abandoned = [], [], []

    async def go():
        loop = asyncio.get_running_loop()
        suspend_flow, stopped = asyncio.Event(), asyncio.Event()

        async def callback(message):
            if suspend_flow.is_set():  # flow control holds every hand-off meanwhile
                await loop.create_future()
            if message.offset == 2:
                loop.call_later(0.01, suspend_flow.set)
                try:
                    await loop.create_future()  # room in the buffer that never comes
                finally:
                    abandoned.append(message.offset)
            delivered.append(message.offset)

        getmany = one_fetch([(tp, m) for m in messages], stopped)

        async def wait_first(*coros):
            raced.append(len(delivered))
            tasks = [asyncio.ensure_future(c if asyncio.iscoroutine(c) else c.wait())
                     for c in coros]
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        read_offset = {tp: None}
        consumer = drain_loop_consumer(callback=callback, getmany=getmany, stopped=stopped,
                                       read_offset=read_offset, suspend_flow=suspend_flow,
                                       wait_first=wait_first)
        await WardenConsumer._drain_messages(consumer, SimpleNamespace(_stopped=asyncio.Event()))
        return read_offset[tp]

    assert asyncio.run(go()) == 3
    assert delivered == [0, 1]
    assert raced == [2, 2]  # only the waiting hand-off (2) and the one after the suspension (3)
    assert abandoned == [2]


# --- records straight to a stage's sink (streams/direct.py) --------------------------------

def test_a_sinks_records_go_to_it_tracked_and_a_full_sink_is_waited_for():
    """Records of a sink's topics skip the streams; each is tracked as unacknowledged when
    handed over (a rebalance waits for it). 0 and 1 fill the sink; 2 waits for the stage
    to take a batch; records of other topics still go through the streams' hand-off."""
    tp, other = TP("warden-friend-adds", 0), TP("warden-account-decisions", 0)
    fetched = [(tp, SimpleNamespace(offset=o, topic=tp.topic, tp=tp)) for o in range(3)]
    fetched.append((other, SimpleNamespace(offset=0, topic=other.topic, tp=other)))
    sink = RecordSink([tp.topic], maxsize=2)
    tracked, streamed, taken = [], [], []

    async def go():
        stopped, suspend_flow = asyncio.Event(), asyncio.Event()

        async def callback(message):
            streamed.append(message.topic)

        getmany = one_fetch(fetched, stopped)

        async def wait_first(*coros):
            taken.extend(m.offset for m in sink.records)  # the stage takes a batch meanwhile
            sink.records.clear()
            await coros[0]
            for c in coros[1:]:
                if asyncio.iscoroutine(c):
                    c.close()

        read_offset = {tp: None, other: None}
        consumer = drain_loop_consumer(
            callback=callback, getmany=getmany, stopped=stopped, read_offset=read_offset,
            suspend_flow=suspend_flow, wait_first=wait_first, sinks={tp.topic: sink},
            track_message=lambda m: tracked.append(m.offset))
        await WardenConsumer._drain_messages(consumer, SimpleNamespace(_stopped=asyncio.Event()))
        return read_offset

    read = asyncio.run(go())
    assert taken == [0, 1] and [m.offset for m in sink.records] == [2]
    assert tracked == [0, 1, 2]
    assert streamed == [other.topic]
    assert read == {tp: 2, other: 0}


def test_while_the_flow_is_suspended_a_sinks_records_are_dropped_but_count_as_read():
    """As a hand-off cancelled by a rebalance: the seek after it reads them again."""
    tp = TP("warden-friend-adds", 0)
    sink = RecordSink([tp.topic])
    tracked = []

    async def go():
        stopped = asyncio.Event()
        getmany = one_fetch([(tp, SimpleNamespace(offset=o, topic=tp.topic, tp=tp))
                             for o in range(2)], stopped)

        read_offset = {tp: None}
        consumer = drain_loop_consumer(
            callback=None, getmany=getmany, stopped=stopped, read_offset=read_offset,
            suspend_flow=asyncio.Event(), wait_first=None, sinks={tp.topic: sink},
            track_message=tracked.append, flow_active=lambda: False)
        await WardenConsumer._drain_messages(consumer, SimpleNamespace(_stopped=asyncio.Event()))
        return read_offset[tp]

    assert asyncio.run(go()) == 1
    assert sink.records == [] and tracked == []


# --- a rebalance waits only for records a stage took (streams/direct.py) ------------------

class Handed:
    """A record the drain loop handed over: Faust tracks it in a weak set until acked."""

    acked = False
    refcount = 0


def consumer_waiting_for_acks() -> WardenConsumer:
    """What Faust's `Consumer.wait_empty` (run as is) reads of its consumer."""
    consumer = object.__new__(WardenConsumer)
    consumer._stopped, consumer._crashed = asyncio.Event(), asyncio.Event()
    consumer._unacked_messages = WeakSet()

    async def commit(*_args, **_kwargs):
        return None

    async def wait_for_ack(timeout):
        await asyncio.sleep(0.005)

    consumer.commit = consumer.commit_and_end_transactions = commit
    consumer._wait_for_ack = wait_for_ack
    consumer.log = SimpleNamespace(warning=lambda *_: None, info=lambda *_: None,
                                   dev=lambda *_: None)
    consumer.app = SimpleNamespace(agents=SimpleNamespace(human_tracebacks=lambda: ""))
    consumer.diag = SimpleNamespace(set_flag=lambda _f: None, unset_flag=lambda _f: None)
    return consumer


@pytest.mark.parametrize("untracked", [True, False])
def test_a_rebalance_does_not_wait_for_records_a_sink_dropped(untracked):
    """Faust begins a rebalance by clearing the streams' buffers, the sinks with them, then
    waits until every record tracked is acked. The drain loop still refers to the last
    record it handed over, so the weak set kept that one, never to be acked: the worker
    waited until the group evicted it (bench/perf.py's stage D2 on 2026-12-07, 60 s).
    The consumer untracks what a sink drops; without that the wait never ends."""
    async def go():
        consumer = consumer_waiting_for_acks()
        sink = RecordSink(["warden-friend-adds"],
                          **({"on_drop": consumer.untrack} if untracked else {}))
        last_handed_over = Handed()  # (the drain loop's local variable)
        assert sink.put(last_handed_over)
        consumer._unacked_messages.add(last_handed_over)
        sink.clear()  # Faust's `flow_control.clear()` in `_on_partitions_revoked`
        await asyncio.wait_for(consumer.wait_empty(), 0.5)

    if untracked:
        asyncio.run(go())
    else:
        with pytest.raises(asyncio.TimeoutError):
            asyncio.run(go())


def test_a_record_a_stage_took_is_still_waited_for_until_acked():
    async def go():
        consumer = consumer_waiting_for_acks()
        sink = RecordSink(["warden-friend-adds"], on_drop=consumer.untrack)
        taken = Handed()
        assert sink.put(taken)
        consumer._unacked_messages.add(taken)
        batch = sink.records[:]  # a stage took it and is handling it
        sink.records.clear()
        sink.clear()
        waiting = asyncio.create_task(consumer.wait_empty())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        batch[0].acked = True  # handled
        await asyncio.wait_for(waiting, 1)

    asyncio.run(go())


def test_a_partitions_highwater_is_stamped_with_when_its_fetch_was_asked_for(monkeypatch):
    """The alignment needs a time the broker's highwater cannot precede: the request's send,
    not the response's processing, which a busy worker delays (stamp_fetch_requests)."""
    from aiokafka import TopicPartition

    from streams import consumer as consumer_module

    states = {TopicPartition("friend-adds", 0): SimpleNamespace(timestamp=None),
              TopicPartition("friend-adds", 1): SimpleNamespace(timestamp=None)}
    assignment = SimpleNamespace(state_value=states.get)
    clock = iter([1_000.0, 2_000.0])
    monkeypatch.setattr(consumer_module.time, "time", lambda: next(clock))

    answers = iter([5_000_000, 6_000_000])

    async def process(assignment, node_id, request):  # as aiokafka's: stamps the answer
        await asyncio.sleep(0)
        answered_at = next(answers)
        for topic, partitions in request.topics:
            for partition, *_ in partitions:
                if partition in request.answered:
                    states[TopicPartition(topic, partition)].timestamp = answered_at
        return True

    fetcher = SimpleNamespace(_proc_fetch_request=process)
    requested = consumer_module.stamp_fetch_requests(SimpleNamespace(_fetcher=fetcher))

    def request(answered):
        return SimpleNamespace(topics=[("friend-adds", [(0, 5, 1048576), (1, 7, 1048576)])],
                               answered=answered)

    assert asyncio.run(fetcher._proc_fetch_request(assignment, 1, request({0, 1})))
    assert requested == {TopicPartition("friend-adds", 0): 1_000_000,
                         TopicPartition("friend-adds", 1): 1_000_000}
    asyncio.run(fetcher._proc_fetch_request(assignment, 1, request({1})))
    assert requested[TopicPartition("friend-adds", 1)] == 2_000_000
    assert requested[TopicPartition("friend-adds", 0)] == 1_000_000  # not in that answer
    assert requested.get(TP("friend-adds", 1)) == 2_000_000  # (Faust's TP finds it too)


def test_an_aiokafka_without_the_fetch_method_leaves_no_fetch_confirming_anything():
    from streams import consumer as consumer_module

    assert consumer_module.stamp_fetch_requests(SimpleNamespace(_fetcher=None)) == {}


@pytest.mark.asyncio
async def test_a_backlog_is_handed_out_in_turns_of_each_partition_not_one_fetch_at_a_time(
        monkeypatch):
    """aiokafka hands out its buffer in fetch order and leaves a partition it took part of
    first in line: one partition's whole fetch (thousands of records) went before the next
    one's, and inputs of the starved topics' partition waited for them (the alignment) as did
    every device check (their frontier): 48 inputs settled in one backlog's first 5 s."""
    from collections import OrderedDict

    signals, adds, reports = (TP(topic, 1) for topic in ("signals", "adds", "reports"))
    fetch = 3 * FAIR_SHARE
    buffered = OrderedDict([(signals, list(range(fetch))), (adds, list(range(fetch))),
                            (reports, list(range(fetch)))])
    thread, _ = thread_over(monkeypatch, buffered)
    consumer = SimpleNamespace(_fetcher=SimpleNamespace(_records=buffered))
    live = {signals, adds, reports}
    turns = [await thread._fetch_records(consumer, live, timeout=1.0, max_records=FAIR_SHARE)
             for _ in range(4)]
    assert [list(turn) for turn in turns] == [[signals], [adds], [reports], [signals]]
    assert turns[3][signals] == list(range(FAIR_SHARE, 2 * FAIR_SHARE))  # (each in order)
    more = await thread._fetch_records(consumer, live, timeout=1.0,
                                       max_records=FAIR_SHARE + FAIR_SHARE // 2)
    assert {tp: len(records) for tp, records in more.items()} == {
        adds: FAIR_SHARE, reports: FAIR_SHARE // 2}
    assert list(buffered)[0] == signals  # its turn next: it went longest without one
