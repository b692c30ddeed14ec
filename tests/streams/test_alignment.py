"""Event-time alignment of the input topics (streams/alignment.py): an input waits until
every input topic has caught up with it, or WARDEN_ALIGN_MS of wall time, and leaves in
event-time order — so an appeal fetched after a later device signal is still applied first."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry
from test_stages import NAMES, PARTITIONS, T0, Bus, replay_decisions

from detectors.config import DEFAULT_POLICY
from streams.alignment import FETCH_SKEW_MS, InputAlignment
from streams.metrics import Metrics
from streams.records import Record, partition_of
from streams.stages import AccountStage

INPUTS = NAMES.inputs
DAY = 86_400_000


class Wall:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def rec(topic: str, offset: int, ts: int, partition: int = 0) -> Record:
    return Record(topic, partition, offset, b"a", orjson.dumps({"ts": ts}), None)


def released_times(align: InputAlignment, partition: int = 0) -> list[int]:
    return [ts for ts, *_ in align.release([partition])]


def test_an_input_waits_until_every_input_topic_has_passed_its_time():
    wall = Wall()
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=wall)
    align.hold(20, rec("device-signals", 0, 20), "event")
    assert released_times(align) == []
    for offset, topic in enumerate(t for t in INPUTS if t != "device-signals"):
        assert released_times(align) == []
        align.hold(30 + offset, rec(topic, 0, 30 + offset), "event")
    # every topic has now delivered something at least as late as 20; later ones still wait
    assert released_times(align) == [20]


def test_the_held_inputs_leave_in_event_time_order_not_arrival_order():
    wall = Wall()
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=wall)
    align.hold(50, rec("device-signals", 0, 50), "event")
    align.hold(10, rec("moderation-commands", 0, 10), "event")
    align.hold(30, rec("friend-adds", 0, 30), "event")
    wall.now = 100
    assert released_times(align) == [10, 30, 50]


def test_a_quiet_topic_holds_inputs_back_for_align_ms_of_wall_time_only():
    wall = Wall()
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=wall)
    align.hold(20, rec("friend-adds", 0, 20), "event")
    wall.now = 99
    assert released_times(align) == [] and align.due([0]) == []
    wall.now = 100
    assert align.due([0]) == [0]
    assert align.due([0]) == []  # one tick per wait
    assert released_times(align) == [20]
    assert align.timed_out == 1


def test_the_stage_knows_when_the_next_held_input_may_leave_without_a_tick():
    """The account stage's batch loop wakes when the earliest wait ends (`next_due_ms`) and
    releases the partitions that are due, with no record of theirs in the batch."""
    wall = Wall()
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=wall)
    assert align.next_due_ms() is None and align.due_partitions() == []
    align.hold(20, rec("friend-adds", 0, 20, partition=0), "event")
    wall.now = 30
    align.hold(25, rec("friend-adds", 0, 25, partition=2), "event")
    wall.now = 60
    assert align.next_due_ms() == 40 and align.due_partitions() == []
    wall.now = 100
    assert align.next_due_ms() == 0 and align.due_partitions() == [0]
    assert released_times(align, 0) == [20] and align.timed_out == 1
    assert align.next_due_ms() == 30 and align.due_partitions() == []
    wall.now = 130
    assert align.due_partitions() == [2]
    assert released_times(align, 2) == [25]
    assert align.next_due_ms() is None


def test_a_full_buffer_is_due_at_once():
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=Wall(), cap=1)
    align.hold(1, rec("friend-adds", 0, 1), "event")
    assert align.next_due_ms() == 100
    align.hold(2, rec("friend-adds", 1, 2), "event")
    assert align.next_due_ms() == 0 and align.due_partitions() == [0]
    assert align.timed_out == 0  # (asking does not count a release)


class Fetches:
    """The consumer's view of each input topic-partition: its highwater, the wall time of the
    last fetch answered for it and when that fetch was asked for."""

    def __init__(self) -> None:
        self.ends: dict[tuple[str, int], int] = {}
        self.at: dict[tuple[str, int], int] = {}
        self.asked: dict[tuple[str, int], int] = {}

    def answered(self, when: int, asked: int | None = None, **ends: int) -> None:
        """A fetch asked for at `asked` (default: `when`) and answered at `when` for every
        input topic of partition 0 (`ends`: highwaters by topic, underscores for dashes; the
        others stay as they were)."""
        for topic in INPUTS:
            self.at[(topic, 0)] = when
            self.asked[(topic, 0)] = when if asked is None else asked
            self.ends.setdefault((topic, 0), 0)
        for name, end in ends.items():
            self.ends[(name.replace("_", "-"), 0)] = end

    def alignment(self, wall: Wall) -> InputAlignment:
        return InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=wall,
                              highwater=lambda t, p: self.ends.get((t, p)),
                              fetched_at=lambda t, p: self.at.get((t, p)),
                              requested_at=lambda t, p: self.asked.get((t, p)),
                              fetch_skew_ms=FETCH_SKEW_MS)


def test_a_topic_a_later_fetch_found_empty_holds_nothing_back():
    """KIP-695's rule: message-reports and moderation-commands had nothing on the broker at a
    fetch answered after the one that brought the friend add, so anything they get later
    was appended after it: the friend add need not wait 100 ms for them."""
    wall, fetches = Wall(), Fetches()
    align = fetches.alignment(wall)
    fetches.answered(10, friend_adds=1, device_signals=1, room_creations=1)
    wall.now = 12
    align.hold(20, rec("friend-adds", 0, 20), "event")
    align.hold(25, rec("device-signals", 0, 25), "event")
    align.hold(30, rec("room-creations", 0, 30), "event")
    # the same fetch said the sparse topics were empty: not enough (a producer's batches to
    # two partitions can be appended in either order: 40 inputs out of event-time order in a
    # 20 s run of bench/perf.py's latency phase when this counted), nor one right after it
    assert released_times(align) == []
    fetches.answered(10 + FETCH_SKEW_MS - 1)
    assert released_times(align) == []
    fetches.answered(10 + FETCH_SKEW_MS)  # later by the skew: still nothing on any topic
    assert released_times(align) == [20, 25, 30] and align.timed_out == 0


def test_a_topic_found_empty_still_holds_inputs_for_align_ms_unless_a_margin_is_set():
    """The fetch rule is off by default: producers' lag is not known, and a margin it exceeds
    applies inputs out of event-time order (`FETCH_SKEW_MS`)."""
    wall, fetches = Wall(), Fetches()
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=wall,
                           highwater=lambda t, p: fetches.ends.get((t, p)),
                           fetched_at=lambda t, p: fetches.at.get((t, p)),
                           requested_at=lambda t, p: fetches.asked.get((t, p)))
    fetches.answered(10, friend_adds=1)
    wall.now = 12
    align.hold(20, rec("friend-adds", 0, 20), "event")
    fetches.answered(5_000)
    wall.now = 111
    assert released_times(align) == []
    wall.now = 112
    assert released_times(align) == [20] and align.timed_out == 1


def test_a_fetch_answered_late_confirms_only_what_the_broker_knew_when_it_was_asked_for():
    """The consumer's thread stamps a response when it gets to it, which a busy worker can
    delay by tens of ms; the broker read the highwater earlier, between the request and the
    response. A producer's record appended meanwhile was not in it: 14 and 24 of 8,000
    inputs out of event-time order in 2 of 5 runs of tests/integration/test_pipeline.py
    when the answer's time counted. The request's time does."""
    wall, fetches = Wall(), Fetches()
    align = fetches.alignment(wall)
    fetches.answered(10, friend_adds=1)
    wall.now = 12
    align.hold(20, rec("friend-adds", 0, 20), "event")
    fetches.answered(10 + FETCH_SKEW_MS + 50, asked=10 + FETCH_SKEW_MS - 1)
    assert released_times(align) == []
    fetches.answered(10 + FETCH_SKEW_MS + 60, asked=10 + FETCH_SKEW_MS)
    assert released_times(align) == [20] and align.timed_out == 0


def test_a_topic_whose_fetched_records_have_not_arrived_is_still_waited_for():
    """A later fetch found records the stage has not received yet (on their way through the
    consumer): the topic is not empty, and the input waits for them as for a backlog."""
    wall, fetches = Wall(), Fetches()
    align = fetches.alignment(wall)
    fetches.answered(10, friend_adds=1, device_signals=1, room_creations=1)
    wall.now = 12
    for offset, topic in enumerate(("friend-adds", "device-signals", "room-creations")):
        align.hold(20 + offset, rec(topic, 0, 20 + offset), "event")
    fetches.answered(40, moderation_commands=1)  # an appeal, fetched, not handed over yet
    wall.now = 5_000
    assert released_times(align) == []
    align.hold(15, rec("moderation-commands", 0, 15), "event")
    fetches.answered(40 + FETCH_SKEW_MS)  # (the appeal's own fetch was at 40)
    assert released_times(align) == [15, 20, 21, 22] and align.timed_out == 0


def test_the_skew_is_the_stages_setting():
    """WARDEN_ALIGN_SKEW_MS: a producer whose requests take longer needs a larger margin."""
    stage = AccountStage(policy=DEFAULT_POLICY, names=NAMES, partitions=PARTITIONS,
                         accounts={}, clocks={}, metrics=Metrics(CollectorRegistry()),
                         align_ms=100, align_skew_ms=50)
    assert stage.alignment.fetch_skew_ms == 50


def test_no_fetch_since_the_input_came_leaves_the_align_ms_bound():
    """No fetch answered since (a paused partition, a slow consumer): a quiet topic holds the
    input for align_ms, as before."""
    wall, fetches = Wall(), Fetches()
    align = fetches.alignment(wall)
    fetches.answered(10, friend_adds=1)
    wall.now = 12
    align.hold(20, rec("friend-adds", 0, 20), "event")
    wall.now = 111
    assert released_times(align) == []
    wall.now = 112
    assert released_times(align) == [20] and align.timed_out == 1


def test_the_stage_reads_a_fetch_time_before_the_highwater_that_came_with_it():
    """The consumer thread updates them while the stage reads them: a highwater read first
    could come from an older fetch than the fetch times read after it, and a topic with new
    records would look empty. During a batch each is read once, the fetch times first."""
    reads: list[tuple[str, str]] = []

    def highwater(topic: str, partition: int) -> int:
        reads.append(("highwater", topic))
        return 0

    def fetched_at(topic: str, partition: int) -> int:
        reads.append(("fetched_at", topic))
        return T0

    def requested_at(topic: str, partition: int) -> int:
        reads.append(("requested_at", topic))
        return T0

    stage = AccountStage(policy=DEFAULT_POLICY, names=NAMES, partitions=PARTITIONS,
                         accounts={}, clocks={}, metrics=Metrics(CollectorRegistry()),
                         wall_ms=lambda: T0, highwater=highwater, fetched_at=fetched_at,
                         requested_at=requested_at, align_ms=100)
    value = orjson.dumps({"event_id": "e1", "account_id": "a", "device_id": "d", "ts": T0,
                          "kind": "ok"})
    stage.process([Record(NAMES.input("device-signals"), 0, 0, b"a", value, T0)])
    assert reads, "the alignment asked"
    for topic in INPUTS:
        asked = [what for what, t in reads if t == NAMES.input(topic)]
        assert asked == ["fetched_at", "requested_at", "highwater"], (topic, asked)


def test_the_fetch_rule_is_off_unless_the_stage_is_given_a_margin():
    stage = AccountStage(policy=DEFAULT_POLICY, names=NAMES, partitions=PARTITIONS,
                         accounts={}, clocks={}, metrics=Metrics(CollectorRegistry()),
                         align_ms=100)
    assert stage.alignment.fetch_skew_ms is None


def test_a_topic_with_a_known_backlog_is_waited_for_longer_than_a_quiet_one():
    """After downtime friend-adds still has records on the broker that the worker has not
    received: a device signal waits for them (up to backlog_wait_ms), not just align_ms."""
    wall = Wall()
    ends = {("friend-adds", 0): 50}
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=wall,
                           highwater=lambda t, p: ends.get((t, p)), backlog_wait_ms=5_000)
    align.hold(20, rec("device-signals", 0, 20), "event")
    align.hold(5, rec("friend-adds", 9, 5), "event")  # friend-adds offsets 10..49 still to come
    wall.now = 1_000
    assert released_times(align) == [5] and align.due([0]) == []
    align.hold(25, rec("friend-adds", 49, 25), "event")  # caught up with the device signal
    assert released_times(align) == [20]
    align.hold(30, rec("device-signals", 1, 30), "event")
    ends[("friend-adds", 0)] = 80
    wall.now = 5_999  # the friend add at 25 only waits align_ms for the quiet topics
    assert released_times(align) == [25]
    wall.now = 6_000
    assert released_times(align) == [30]


def test_a_late_topic_is_waited_for_while_it_delivers_and_backlog_wait_ms_after_that():
    """A sparse topic's input fetched at the start of a long backlog is the earliest held
    only once the dense topic has caught up with everything before it, long after it came.
    Counted from its arrival it then left at once, hours of event time ahead of the dense
    topic (tests/integration/test_two_workers.py: an appeal decided before an earlier
    extension). Counted from the late topic's last delivery, it waits for it."""
    wall = Wall()
    ends = {("device-signals", 0): 1_000}
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=wall,
                           highwater=lambda t, p: ends.get((t, p)), backlog_wait_ms=5_000)
    for topic in INPUTS:  # every other topic is past the appeal
        if topic not in ("moderation-commands", "device-signals"):
            align.hold(9_000, rec(topic, 0, 9_000), "event")
    align.hold(500, rec("moderation-commands", 0, 500), "event")  # the appeal, fetched first
    for offset in range(0, 400, 20):  # the device signals keep coming, all before it
        wall.now += 1_000
        align.hold(offset, rec("device-signals", offset, offset), "event")
        assert 500 not in released_times(align)
        assert align.next_due_ms() == 5_000  # (none of the others may leave either)
    wall.now += 4_999  # the device signals stopped coming, still short of the appeal
    assert released_times(align) == []
    wall.now += 1
    # a topic that stalls holds nothing for ever (the later inputs waited for it too)
    assert released_times(align) == [500, 9_000, 9_000, 9_000]
    assert align.timed_out == 4


def test_a_backlog_the_worker_paused_for_replies_is_waited_for_until_resumed_and_after():
    """A partition with WARDEN_MAX_IN_FLIGHT requests unanswered stops reading its input
    topics: its backlog is silent because of the pause, not late. Its held inputs wait for
    it through the pause, and backlog_wait_ms after the pause ends."""
    wall = Wall()
    ends = {("device-signals", 0): 1_000}
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=wall,
                           highwater=lambda t, p: ends.get((t, p)), backlog_wait_ms=5_000)
    for topic in INPUTS:
        if topic != "device-signals":
            align.hold(9_000, rec(topic, 0, 9_000), "event")
    align.hold(100, rec("device-signals", 0, 100), "event")
    assert released_times(align) == [100]
    align.stop(0)
    wall.now += 60_000  # a long pause
    assert released_times(align) == [] and align.due_partitions() == []
    align.resume(0)
    wall.now += 4_999
    assert released_times(align) == []
    wall.now += 1  # resumed and still silent for backlog_wait_ms
    assert released_times(align) == [9_000] * 4 and align.timed_out == 4


def test_zero_align_ms_releases_everything_at_once():
    align = InputAlignment(inputs=INPUTS, align_ms=0, load=lambda p: [], wall_ms=Wall())
    align.hold(20, rec("friend-adds", 0, 20), "event")
    assert released_times(align) == [20]


def test_the_buffer_is_capped():
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=Wall(), cap=3)
    for i in range(5):
        align.hold(i, rec("friend-adds", i, i), "event")
    assert released_times(align) == [0, 1]


def test_the_buffer_is_capped_in_bytes():
    """Held inputs live in memory and hold the commit back: a backlog of large inputs leaves
    once the partition's held bytes pass the budget."""
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=Wall(),
                           max_bytes=100_000)
    for i in range(200):
        align.hold(i, Record("friend-adds", 0, i, b"a", orjson.dumps({"ts": i, "pad": "x" * 2000}),
                             None), "event")
    align.release([0])
    held = align.heap(0)
    assert 100_000 - 2_100 < sum(len(e[3].value) + 1 for e in held) <= 100_000


def test_a_crowded_partition_stops_fetching_the_topics_ahead_of_its_earliest_input():
    """After downtime a fetch covers days of a sparse topic and hours of a dense one: the
    buffer fills with inputs ahead of the dense topic. Over `pause_held` the topics that
    passed the earliest input are paused, so the one it waits for (device-signals, with a
    backlog) is fetched alone, until the partition holds half as much."""
    ends = {("device-signals", 0): 10_000}
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=Wall(),
                           highwater=lambda t, p: ends.get((t, p)), pause_held=4)
    others = [t for t in INPUTS if t != "device-signals"]
    for offset, topic in enumerate(others):
        align.hold(1_000, rec(topic, offset, 1_000), "event")
    assert released_times(align) == [] and align.topics_ahead(0) == ()  # 4: not crowded
    align.hold(2_000, rec("friend-adds", 9, 2_000), "event")
    assert set(align.topics_ahead(0)) == set(others)
    align.hold(1_000, rec("device-signals", 0, 1_000), "event")  # the dense topic catches up
    assert released_times(align) == [1_000] * 5
    assert align.topics_ahead(0) == ()  # 1 held: fetch them all again


def test_a_crowded_partition_whose_earliest_input_may_leave_pauses_nothing():
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=Wall(),
                           pause_held=2, pause_bytes=10**9)
    for offset, topic in enumerate(INPUTS):
        align.hold(50, rec(topic, offset, 50), "event")
    assert align.topics_ahead(0) == ()  # it leaves in the next batch
    assert released_times(align) == [50] * len(INPUTS)


def test_the_pause_also_counts_bytes_and_ends_with_the_partition():
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=Wall(),
                           pause_bytes=5_000)
    for i in range(3):
        align.hold(100 + i, Record("friend-adds", 0, i, b"a",
                                   orjson.dumps({"ts": 100 + i, "pad": "x" * 2000}), None), "e")
    assert align.topics_ahead(0) == ("friend-adds",)
    align.forget([0])  # revoked
    assert align.topics_ahead(0) == ()


def test_no_offset_is_committed_past_a_held_input_or_one_applied_in_a_batch_not_written():
    """Held inputs live in memory only: after a crash they are read again from the committed
    offset (those applied since are ignored as repeats), so the commit stops at the
    earliest one, and at a released one until the batch that applied it is written."""
    wall = Wall()
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=wall)
    assert align.floor("friend-adds", 0) is None
    align.hold(30, rec("friend-adds", 7, 30), "e7")
    align.hold(20, rec("friend-adds", 8, 20), "e8")  # earlier event time, later offset
    align.hold(25, rec("room-creations", 3, 25), "r3")
    assert align.floor("friend-adds", 0) == 7 and align.floor("room-creations", 0) == 3
    wall.now = 100
    assert [r.offset for _, _, r, _ in align.release([0])] == [8, 3, 7]
    assert align.floor("friend-adds", 0) == 7  # applied, not written yet
    align.settle()  # the batch that applied them is written
    assert align.floor("friend-adds", 0) is None and align.floor("room-creations", 0) is None


def test_a_held_input_keeps_the_floor_until_it_leaves_whatever_leaves_before_it():
    wall = Wall()
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=wall)
    align.hold(50, rec("friend-adds", 4, 50), "late")
    for topic in INPUTS:
        if topic != "friend-adds":
            align.hold(47, rec(topic, 0, 47), "e")
    align.hold(45, rec("friend-adds", 5, 45), "earlier")
    released = [(r.topic, r.offset) for _, _, r, _ in align.release([0])]
    assert ("friend-adds", 5) in released and ("friend-adds", 4) not in released  # 47 < 50
    align.settle()
    assert align.floor("friend-adds", 0) == 4
    wall.now = 100
    assert [r.offset for _, _, r, _ in align.release([0])] == [4]
    align.settle()
    assert align.floor("friend-adds", 0) is None


def test_a_rebalance_keeps_the_floor_until_the_partitions_are_assigned_again():
    """Faust commits while partitions are revoked: inputs held then are not applied by this
    worker, so their offsets must stay uncommitted; the next assignment reads them again."""
    align = InputAlignment(inputs=INPUTS, align_ms=100, load=lambda p: [], wall_ms=Wall())
    align.hold(30, rec("friend-adds", 7, 30), "e7")
    align.forget([0])
    assert align.heap(0) == [] and align.floor("friend-adds", 0) == 7
    align.reset_floors()
    assert align.floor("friend-adds", 0) is None


def test_inputs_an_older_worker_kept_in_account_records_are_restored_and_leave():
    """Before, held inputs were kept in their accounts' records ([ts, arrival, wall_in, topic,
    offset, key, value, stamp]); a worker started on such records restores them."""
    wall = Wall()
    saved = {2: [[20, 1, 0, "friend-adds", 7, "a", orjson.dumps({"ts": 20}).decode(), None],
                 [10, 2, 0, "room-creations", 3, "a", orjson.dumps({"ts": 10}).decode(), None]]}
    restarted = InputAlignment(inputs=INPUTS, align_ms=100,
                               load=lambda p: [list(e) for e in saved.get(p, [])], wall_ms=wall)
    wall.now = 1000
    out = restarted.release([2])
    assert [(ts, r.topic, r.offset, event) for ts, _, r, event in out] == [
        (10, "room-creations", 3, None), (20, "friend-adds", 7, None)]
    assert out[1][2].value == orjson.dumps({"ts": 20}) and out[1][2].key == b"a"
    assert restarted.heap(2) == []
    assert restarted.floor("friend-adds", 2) is None  # (committed long ago)


def test_after_a_restart_each_held_input_keeps_its_own_event():
    """Regression (found by the crash simulation): a partition's buffer restored after a
    restart was loaded only when first used, so inputs held meanwhile on another partition
    reused its arrival numbers, and an input was released with another input's decoded event
    (one applied twice, the other lost)."""
    wall = Wall()
    saved = {1: [[10, 1, 0, "friend-adds", 0, "a", orjson.dumps({"ts": 10}).decode(), None]]}
    after = InputAlignment(inputs=INPUTS, align_ms=100,
                           load=lambda p: [list(e) for e in saved.get(p, [])], wall_ms=wall)
    after.hold(20, rec("friend-adds", 0, 20, partition=0), "p0-first")
    wall.now = 1_000
    assert [(r.partition, r.offset, event) for _, _, r, event in after.release([1, 0])] == [
        (1, 0, None), (0, 0, "p0-first")]  # p1's input is decoded again from its record


def _appeal_story():
    """An account restricted for a virtual number appeals a day later; a second virtual-number
    signal a day after that extends the restriction. Replay: restricted, appeal received, extended."""
    signal = {"account_id": "acct", "virtual_number": True}
    return [
        ("device-signals", {"event_id": "s1", "ts": T0, "device_id": "dev-1", **signal}),
        ("moderation-commands", {"command_id": "c1", "ts": T0 + DAY, "account_id": "acct",
                                 "actor": "acct", "action": "appeal_filed"}),
        ("device-signals", {"event_id": "s2", "ts": T0 + 2 * DAY, "device_id": "dev-2", **signal}),
    ]


def _fetched_out_of_order(bus: Bus, inputs) -> list[tuple[str, int]]:
    """Three batches: the first signal, the later signal, then the appeal (it reached the
    worker in a later fetch); then the wait runs out and a tick lets the held inputs go."""
    records = [bus.record(t, v["account_id"].encode(), orjson.dumps(v)) for t, v in inputs]
    bus._deliver([records[0]])
    bus._deliver([records[2]])
    bus._deliver([records[1]])
    bus.account.wall_ms = lambda: T0 + 1_000  # the wait ran out
    tick = bus.record(NAMES.account_inbox, None, orjson.dumps(["tick", 0]), records[0].partition)
    bus._deliver([tick])
    return [(d["type"], d["at"]) for d in bus.decisions]


def test_an_appeal_fetched_after_a_later_signal_is_still_applied_first():
    inputs = _appeal_story()
    want = [(d["type"], d["at"]) for d in replay_decisions(inputs, T0 + 2 * DAY)]
    assert [t for t, _ in want] == ["restricted", "appeal_received", "extended"]

    aligned = Bus()
    aligned.account.alignment.align_ms = 100
    assert _fetched_out_of_order(aligned, inputs) == want
    assert out_of_order(aligned) == {topic: 0.0 for topic in CANONICAL_INPUTS}

    unaligned = Bus()  # align_ms = 0: arrival order within separate batches
    assert _fetched_out_of_order(unaligned, inputs) != want
    # what an operator sees: the appeal was applied after the later signal
    assert out_of_order(unaligned) == {topic: float(topic == "moderation-commands")
                                       for topic in CANONICAL_INPUTS}


CANONICAL_INPUTS = ("friend-adds", "room-creations", "message-reports", "device-signals",
                    "moderation-commands")


def out_of_order(bus: Bus) -> dict[str, float]:
    return {topic: bus.registry.get_sample_value("warden_inputs_out_of_order_total",
                                                 {"topic": topic})
            for topic in CANONICAL_INPUTS}


def test_held_inputs_leave_in_a_batch_with_no_record_once_their_wait_ran_out():
    """The account stage's batch loop runs an empty batch when `next_batch_s` runs out: the
    held inputs leave without a tick through Kafka, in replay's order."""
    inputs = _appeal_story()
    want = [(d["type"], d["at"]) for d in replay_decisions(inputs, T0 + 2 * DAY)]
    bus = Bus()
    bus.account.alignment.align_ms = 100
    records = [bus.record(t, v["account_id"].encode(), orjson.dumps(v)) for t, v in inputs]
    for record in (records[0], records[2], records[1]):
        bus._deliver([record])
    assert bus.decisions == [] and bus.account.next_batch_s() is not None
    bus.account.wall_ms = lambda: T0 + 1_000  # the wait ran out
    assert bus.account.next_batch_s() == 0
    bus._deliver(bus.commit(bus.account.process([])))
    assert [(d["type"], d["at"]) for d in bus.decisions] == want
    assert bus.account.next_batch_s() is None


def test_a_held_input_writes_no_record_and_holds_the_commit_back_until_it_is_written():
    """Holding an input costs no account-record write: its offset is simply not committed
    (`commit_floor`) until the batch that applied it was written (`batch_written`)."""
    inputs = _appeal_story()
    bus = Bus()
    bus.account.alignment.align_ms = 100
    topic, value = inputs[0]
    record = bus.record(topic, b"acct", orjson.dumps(value))
    holding = bus.account.process([record])
    assert holding.writes == {} and bus.account.commit_floor(topic, record.partition) == 0
    bus.account.wall_ms = lambda: T0 + 1_000  # the wait ran out
    applying = bus.account.process([])
    assert ("accounts", b"acct") in applying.writes
    assert bus.account.commit_floor(topic, record.partition) == 0  # not written yet
    bus.commit(applying)
    bus.account.batch_written()  # (as the agent says once the batch's commit is done)
    assert bus.account.commit_floor(topic, record.partition) is None


def test_a_written_batch_lifts_the_floor_without_waiting_for_another_batch():
    """A quiet partition may get no further batch: the agent says when a batch is written."""
    topic, value = _appeal_story()[0]
    bus = Bus()
    bus.account.alignment.align_ms = 100
    record = bus.record(topic, b"acct", orjson.dumps(value))
    bus.commit(bus.account.process([record]))
    bus.account.wall_ms = lambda: T0 + 1_000
    bus.commit(bus.account.process([]))
    assert bus.account.commit_floor(topic, record.partition) == 0
    bus.account.batch_written()
    assert bus.account.commit_floor(topic, record.partition) is None


def test_a_lift_fires_before_a_later_input_while_other_inputs_wait_in_the_buffer():
    """Replay: the restriction lifts at lift_at, then an operator's restrict an hour later
    restricts anew. Live, another topic's later input still waits in the buffer when the
    command is applied; that must not hold the lift back (its time is known), or the command
    would extend the old restriction instead."""
    hour = 3_600_000
    first = {"event_id": "v1", "ts": T0, "account_id": "vn", "device_id": "d1",
             "virtual_number": True}
    lift_at = replay_decisions([("device-signals", first)], T0)[0]["lift_at"]
    partition = partition_of(b"vn", PARTITIONS)
    other = next(f"o{i}" for i in range(100)
                 if partition_of(f"o{i}".encode(), PARTITIONS) == partition)
    command = {"command_id": "c1", "ts": lift_at + hour, "account_id": "vn", "actor": "op",
               "action": "restrict", "scopes": ["add_friend"]}
    other_add = {"event_id": "f1", "ts": lift_at + 2 * hour, "account_id": other,
                 "friend_id": "x"}
    inputs = [("device-signals", first), ("moderation-commands", command),
              ("friend-adds", other_add)]
    want = [(d["type"], d["at"], d["level"]) for d in replay_decisions(inputs, lift_at + 2 * hour)]
    assert [t for t, _, lvl in want] == ["restricted", "lifted", "restricted"]

    bus = Bus()
    wall = {"now": T0}
    bus.account.wall_ms = lambda: wall["now"]
    bus.account.alignment.align_ms = 100
    # every record is on one partition (the Bus counts offsets per topic); the others are empty
    bus.account.highwater = lambda topic, p: bus.offsets.get(topic, 0) if p == partition else 0

    def arrive(*batch):
        bus._deliver([bus.record(t, v["account_id"].encode(), orjson.dumps(v)) for t, v in batch])

    def wait_out():
        wall["now"] += 1_000
        bus._deliver([bus.record(NAMES.account_inbox, None, orjson.dumps(["tick", 0]), partition)])

    arrive(inputs[0])
    wait_out()
    arrive(inputs[2])   # the friend add is fetched first and waits for the quiet topics
    wall["now"] += 50
    arrive(inputs[1])   # the earlier command arrives
    wait_out()          # both leave, in event-time order
    assert [(d["type"], d["at"], d["level"]) for d in bus.decisions] == want
