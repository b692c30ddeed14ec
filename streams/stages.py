"""Batch runners for the keyed stages, free of Faust so they test without Kafka.

An agent hands a runner a batch of consumed `Record`s; the runner decodes,
de-duplicates, keeps the per-partition event-time clock, fires due lifts,
calls the pure core (detectors/account.py, detectors/device.py) and returns a
`Batch`: messages to produce and state to write. The agent produces first,
waits for delivery, then writes state and acks — so a crash can repeat a
(byte-identical) decision but never lose one (README "Reliability").
"""

from __future__ import annotations

import hashlib
import heapq
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

import orjson

from detectors import account, codec
from detectors.account import AccountState
from detectors.config import Policy
from detectors.decisions import Decision
from detectors.events import (
    INPUT_TOPICS_SET,
    DeviceSignalled,
    FriendAdded,
    MessageReported,
    ModerationCommanded,
    Rejected,
    RoomCreated,
    decode,
    key_of,
)
from detectors.messages import (
    AccountOnDevice,
    DeviceChecked,
    LiftDue,
    Message,
    ReportsJudged,
    ReportWeighed,
)
from streams.alignment import InputAlignment
from streams.deadletters import dead_letter
from streams.device_stage import (
    HOP_WAIT_MS,
    UNBOUNDED,
    UNKNOWN,
    DeviceStage,
    encode_mark,
    encode_pend,
    encode_reset,
    fresh,
    lowest_moving,
    note_frontier,
)
from streams.metrics import Metrics
from streams.records import (
    USE,
    AccountRecord,
    Batch,
    Output,
    Record,
    by_time,
    compact,
    encode_tick,
    load_account,
    needs_hop,
    park,
    partition_of,
    unpark,
)
from streams.topics import TopicNames

INPUT_TYPES = (FriendAdded, RoomCreated, MessageReported, DeviceSignalled, ModerationCommanded)

# Re-exported: the app and tests build every runner from this module.
__all__ = ["AccountRecord", "AccountStage", "Batch", "DeviceStage", "Output", "Record",
           "encode_tick", "load_account", "partition_of"]


MAX_DEAD_LETTER_KEY = 1024
# decoded records kept at most (accounts awaiting replies, or holding sealed dedupe ids):
# enough for the steady state (at 2,000 events/s a few hundred await one), bounded under a
# backlog, where hot accounts' decoded records (their dedupe ids) cost tens of KB each
DECODED_KEPT = 4_096
# an account with this many inputs waiting (in flight or parked) pauses its partition's input
# topics until it has half as many (`Warden._pace_inputs`): its record holds them all
ACCOUNT_PENDING_PAUSE = 2_000
_UNSENT = object()


@dataclass(frozen=True, slots=True)
class _DeviceMark:
    partition: int
    frontier: int | None
    fresh: bool  # sent in this stage's generation or later (streams/device_stage.py `fresh`)


def pending_since(record: AccountRecord, policy: Policy) -> int | None:
    """The oldest event time the account may still change status at, for its devices: its
    oldest input awaiting a reply (which may restrict it) unless none can change what the
    device triggers read of it (`status_settled`), or the lift of a restriction another
    account can evade (`ban_evasion` reads it until it is lifted)."""
    flight = record.pending.flight
    times = [] if status_settled(record, policy) else [slot[2] for slot in flight]
    r = record.state.lifecycle.restriction
    if r is not None and r.lift_at is not None and r.level >= policy.ban_evasion.min_level:
        times.append(r.lift_at)
    return min(times) if times else None


def status_settled(record: AccountRecord, policy: Policy) -> bool:
    """Can none of the account's inputs awaiting replies change what the device triggers read
    of it (a restriction at the `ban_evasion` level and its scopes, a `tainted_device`
    taint)? Then other accounts' uses of its devices need not wait for them (`announce`).

    True when the account has never been restricted and has no taint, so a restriction now
    would be level 1 (below `ban_evasion.min_level`), and every input awaiting a reply is a
    device use (reports bring `report_flood`, the only trigger that taints) within one level-1
    quiet period of the others (no lift between them, so no level-2 restriction after it),
    with nothing parked behind them (a command could lift, restrict or overturn). Most
    accounts: their devices were told of every input, twice (issue #5)."""
    life = record.state.lifecycle
    flight = record.pending.flight
    if not flight or life.restriction is not None or life.past_starts \
            or life.tainted_at is not None or record.pending.parked \
            or policy.ban_evasion.min_level <= 1:
        return False
    low = high = flight[0][2]
    for slot in flight:
        if len(slot) < 4 or slot[3] != USE:  # a report, a waiting lift, an older worker's slot
            return False
        low, high = min(low, slot[2]), max(high, slot[2])
    return high - low < policy.lifecycle.quiet_base_ms


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The input's key, or its SHA-256 when it is too long to repeat: a dead letter must fit
    in a Kafka record (a ~1 MB input key made a dead letter the broker refused, stalling
    the partition). The value keeps the key's first 64 KiB (streams/deadletters.py)."""
    if key is None or len(key) <= MAX_DEAD_LETTER_KEY:
        return key
    return b"sha256:" + hashlib.sha256(key).hexdigest().encode()


class AccountStage:
    """The account-keyed stage: inputs, reports, feedback, commands, lifts."""

    def __init__(self, *, policy: Policy, names: TopicNames, partitions: int,
                 accounts: MutableMapping[bytes, bytes], clocks: MutableMapping[bytes, bytes],
                 metrics: Metrics,
                 wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 highwater: Callable[[str, int], int | None] = lambda topic, partition: 0,
                 fetched_at: Callable[[str, int], int | None] = lambda topic, partition: None,
                 requested_at: Callable[[str, int], int | None] = lambda topic, partition: None,
                 align_ms: int = 0, align_skew_ms: int | None = None,
                 gate_wait_ms: int = HOP_WAIT_MS) -> None:
        self.policy = policy
        self.partitions = partitions
        self.accounts, self.clocks = accounts, clocks
        self.metrics = metrics
        self.wall_ms = wall_ms
        self.names = names
        self.account_inbox = names.account_inbox
        self.device_inbox = names.device_inbox
        self._lifts: dict[int, list[tuple[int, str]]] = {}
        # per partition: account key -> the oldest time it may still change status at
        self._pending: dict[int, dict[bytes, int]] = {}
        # per partition: account key -> (time, devices) its devices were last told (`announce`)
        self._announced: dict[int, dict[bytes, tuple[int | None, tuple[str, ...]]]] = {}
        self._reset_sent: set[int] = set()
        self._held_loaded: dict[int, list[list[Any]]] = {}  # from `_scan`, for the alignment
        self._marks_sent: dict[int, object] = {}  # last frontier announced per partition
        # cross-key requests sent and not answered yet, per partition (for back-pressure;
        # counted from this worker's start, so replies to older requests are not counted)
        self.in_flight: dict[int, int] = {}
        self.paused: set[int] = set()  # partitions whose input topics wait for replies (app)
        # per partition: accounts with ACCOUNT_PENDING_PAUSE inputs waiting (until half as
        # many) -> how many, as of the last batch that wrote them
        self.crowded_accounts: dict[int, dict[bytes, int]] = {}
        # account partition -> device partition -> its frontier, from the `dmark`s in that
        # account partition's inbox; its lifts of accounts another can evade wait for the
        # lowest (`_Work.gated`): per partition, account key -> (lift_at, wall since)
        self.device_marks: dict[int, dict[int, int]] = {}
        # account partition -> device partition -> wall time its frontier last changed: a
        # device partition still moving is waited for past `gate_wait_ms` (`moving_frontier`)
        self.device_marks_moved: dict[int, dict[int, int]] = {}
        self.generation = 0  # the consumer group's, set by the app on each assignment
        self._gates: dict[int, dict[bytes, tuple[int, int]]] = {}
        self.gate_wait_ms = gate_wait_ms
        self._cursors: dict[str, Any] = {}
        # accounts awaiting a cross-key reply, or hot (sealed dedupe ids): key -> (the value
        # last written, that record decoded), taken instead of decoding while the table still
        # holds that value (the reply's batch, or the hot account's next, loads it again,
        # usually within a few batches)
        self.decoded_kept: dict[bytes, tuple[bytes, AccountRecord]] = {}
        self.last_event_wall: dict[int, int] = {}
        # liveness: when each input topic-partition last had nothing waiting or made progress
        self.progress_wall: dict[tuple[str, int], int] = {}
        self.highwater = highwater
        self.fetched_at = fetched_at
        self.requested_at = requested_at
        # highwaters read during a batch, each asked of the consumer once (`_end`), and the
        # wall times of the fetches they came with and of those fetches' requests, read just
        # before them (`_fetched`, `_requested`)
        self._ends: dict[tuple[str, int], int | None] | None = None
        self._fetches: dict[tuple[str, int], int | None] = {}
        self._requests: dict[tuple[str, int], int | None] = {}
        # per (topic, partition) of an input topic: newest ts and last offset handled
        self.topic_ts: dict[tuple[str, int], int] = {}
        self.topic_offset: dict[tuple[str, int], int] = {}
        # per partition: the newest ts of an input applied (an earlier one after it is out
        # of replay's order: `warden_inputs_out_of_order_total`)
        self.applied_ts: dict[int, int] = {}
        for topic in names.inputs:  # (shown at 0 from the start)
            metrics.out_of_order.labels(names.canonical(topic))
        self.alignment = InputAlignment(inputs=names.inputs, align_ms=align_ms,
                                        load=self._held_entries,
                                        wall_ms=lambda: self.wall_ms(),
                                        highwater=lambda t, p: self._end(t, p),
                                        fetched_at=lambda t, p: self._fetched(t, p),
                                        requested_at=lambda t, p: self._requested(t, p),
                                        fetch_skew_ms=align_skew_ms)

    # --- per batch --------------------------------------------------------------
    def process(self, records: Iterable[Record]) -> Batch:
        """Handle a batch in event-time order (stable), whatever topic each record came from.

        The five input topics are consumed independently, so a batch can hold
        a command consumed before the events it refers to; ordering by `ts`
        within the batch restores the order `warden replay` sees; across
        batches, inputs wait in `self.alignment` (streams/alignment.py) until
        the other input topics have caught up with them.
        """
        self._ends = {}
        try:
            return self._process(list(records))
        finally:
            self._ends = None
            self._fetches.clear()
            self._requests.clear()

    def _end(self, topic: str, partition: int) -> int | None:
        """The input topic-partition's highwater; during a batch, as it was first read in it.
        The lift clock and the frontier ask for every input topic at every lift check, and
        each ask crosses Faust's consumer into aiokafka (`AccountStage._unapplied` was 1.8%
        of the worker's samples); a highwater is only as fresh as the last fetch anyway."""
        ends = self._ends
        if ends is None:
            return self.highwater(topic, partition)
        key = (topic, partition)
        if key not in ends:
            self._fetches[key] = self.fetched_at(topic, partition)
            self._requests[key] = self.requested_at(topic, partition)
            ends[key] = self.highwater(topic, partition)
        return ends[key]

    def _fetched(self, topic: str, partition: int) -> int | None:
        """Wall time of the last fetch answered for an input topic-partition; during a batch,
        the one read just before the highwater `_end` keeps (the alignment relies on that
        highwater being at least as new as the fetch)."""
        return self._read_with_end(topic, partition, self.fetched_at, self._fetches)

    def _requested(self, topic: str, partition: int) -> int | None:
        """When the fetch request behind that highwater was sent (`_fetched`'s twin)."""
        return self._read_with_end(topic, partition, self.requested_at, self._requests)

    def _read_with_end(self, topic: str, partition: int,
                       read: Callable[[str, int], int | None],
                       cache: dict[tuple[str, int], int | None]) -> int | None:
        if self._ends is None:
            return read(topic, partition)
        key = (topic, partition)
        if key not in self._ends:
            self._end(topic, partition)
        return cache[key]

    def _process(self, records: list[Record]) -> Batch:
        work = _Work(self)
        parsed = [work.parse(record) for record in records]
        align = self.alignment
        partitions = {r.partition for r in records}
        if align.align_ms > 0:
            # also those whose held inputs waited their time with no record of theirs here
            partitions.update(align.due_partitions())
            parsed = self._aligned(work, parsed, sorted(partitions))
        parsed.sort(key=by_time)
        newest = self.applied_ts
        for item in parsed:
            if isinstance(item[3], INPUT_TYPES):
                partition = item[2].partition
                if item[0] < newest.get(partition, item[0]):
                    self.metrics.out_of_order.labels(self.names.canonical(item[2].topic)).inc()
                else:
                    newest[partition] = item[0]
            work.apply(*item[2:])
        for partition, marks in work.device_marks.items():  # only now: notices in the batch
            heard = self.device_marks.setdefault(partition, {})  # went first
            moved = self.device_marks_moved.setdefault(partition, {})
            now = self.wall_ms()
            for q, frontier in marks.items():
                note_frontier(heard, moved, q, frontier, now)
        partitions = sorted(partitions)
        for partition in partitions:
            work.open_gates(partition)
        work.finish()
        if align.align_ms > 0:
            for partition, held in align.waiting().items():
                self.metrics.aligning.labels(str(partition)).set(held)
        work.batch.outputs.extend(self.marks(partitions))
        return work.batch

    def next_batch_s(self) -> float | None:
        """Seconds until a batch should run even if no record arrives: held inputs whose
        wait ends then (None: nothing waits)."""
        due = self.alignment.next_due_ms()
        return None if due is None else due / 1000

    def _aligned(self, work: _Work, parsed: list[tuple[int, int, Record, object]],
                 partitions: list[int]) -> list[tuple[int, int, Record, object]]:
        """Inputs go into the alignment buffer (in memory: their offsets are not committed
        until applied, streams/alignment.py); what it releases joins the other items, to
        be applied in this batch."""
        align = self.alignment
        kept = []
        for item in parsed:
            if isinstance(item[3], INPUT_TYPES):
                align.hold(item[0], item[2], item[3])
            else:
                kept.append(item)
        timed_out = align.timed_out
        for ts, arrival, rec, event in align.release(partitions):
            if event is None:  # kept in its account's record by an older worker
                key = rec.key or b""
                pending = work.record(key).pending
                pending.held = [e for e in pending.held if e[1] != arrival]
                work.dirty[key] = rec.partition
                event = decode(self.names.canonical(rec.topic), rec.value or b"")
            kept.append((ts, arrival, rec, event))
        if align.timed_out > timed_out:
            self.metrics.align_timeouts.inc(align.timed_out - timed_out)
        return kept

    def batch_written(self) -> None:
        """The caller has produced the last batch's outputs and handed its state to the
        producer: the inputs it applied may be committed (streams/alignment.py)."""
        self.alignment.settle()

    def reset_commit_floors(self) -> None:
        """After an assignment every partition is read from its committed offset again."""
        self.alignment.reset_floors()

    def commit_floor(self, topic: str, partition: int) -> int | None:
        """The offset of `topic` (an input) not to commit past: its earliest input held for
        alignment, or released in a batch not written yet (None: no limit)."""
        return self.alignment.floor(topic, partition)

    def _held_entries(self, partition: int) -> list[list[Any]]:
        """Every input an older worker held in the partition's account records (after a start
        or a rebalance)."""
        if partition not in self._held_loaded:
            self._scan(partition)
        return self._held_loaded.pop(partition)

    def _scan(self, partition: int) -> None:
        """One pass over the partition's account records (after a start or a rebalance): its
        due-lift heap, the inputs older workers held there for alignment, and the accounts
        awaiting replies."""
        heap: list[tuple[int, str]] = []
        held: list[list[Any]] = []
        pending: dict[bytes, int] = {}
        gates: dict[bytes, tuple[int, int]] = {}
        for key, raw in list(self.accounts.items()):
            if partition_of(key, self.partitions) != partition:
                continue
            record = load_account(raw)
            r = record.state.lifecycle.restriction
            if r is not None and r.lift_at is not None:
                heap.append((r.lift_at, key.decode()))
            held.extend(record.pending.held)
            since = pending_since(record, self.policy)
            if since is not None:
                pending[key] = since
            for slot in record.pending.flight:
                if slot[0] is None:
                    gates[key] = (slot[2], self.wall_ms())
        heapq.heapify(heap)
        self._lifts.setdefault(partition, heap)
        self._held_loaded.setdefault(partition, held)
        self._pending.setdefault(partition, pending)
        self._gates.setdefault(partition, gates)

    def gates(self, partition: int) -> dict[bytes, tuple[int, int]]:
        """Accounts of the partition whose due lift waits for the device stage's frontier."""
        gates = self._gates.get(partition)
        if gates is None:
            self._scan(partition)
            gates = self._gates[partition]
        return gates

    def device_frontier(self, partition: int) -> int:
        """The lowest event time a `DeviceMatched` may still reach `partition` at, over device
        partitions: as its own inbox told it. Each account partition has its copy of every
        `dmark`, behind the notices sent to it before: a mark another partition already read
        says nothing of notices still on their way here (a lift fired before the `ban_evasion`
        notice that extends it, in tests/streams/test_crash_simulation.py)."""
        marks = self.device_marks.get(partition, {})
        return min(marks.get(q, UNKNOWN) for q in range(self.partitions))

    def moving_frontier(self, partition: int, now: int) -> int:
        """The lowest frontier over the device partitions whose frontier moved in the last
        `gate_wait_ms`, as `partition` heard them (UNBOUNDED: none did). One still moving is
        draining requests a backlog held back, not gone (streams/device_stage.py waits for
        a moving account partition the same way): a lift after it waits past
        `gate_wait_ms`, until it stops moving for that long."""
        return lowest_moving(self.device_marks.get(partition, {}),
                             self.device_marks_moved.get(partition, {}), now - self.gate_wait_ms)

    def merge_ticks(self, assigned: Iterable[int]) -> list[Output]:
        """A tick (timer) for each partition whose frontier moved with no batch (a backlog
        appeared, or it was just assigned) or with a lift that waited `gate_wait_ms` for the
        device stage: the batch it starts announces the frontier or opens the gate. Only
        the stage's own batches write records and notices: a timer sending them could race
        a batch between its processing and its produce, and overtake its requests."""
        now = self.wall_ms()
        return [Output(self.account_inbox, None, encode_tick(self.clock(p) or 0), p)
                for p in assigned
                if self._marks_sent.get(p, _UNSENT) != self.frontier(p)
                or any(now - since >= self.gate_wait_ms for _, since in self.gates(p).values())]

    def announce(self, partition: int, key: bytes, record: AccountRecord,
                 since: int | None) -> list[Output]:
        """`pend` notices to the account's devices when the time it may still change status
        at (`pending_since`) or its devices changed since they were last told.

        The device stage holds another account's use of the device that is later than it
        (streams/device_stage.py): replay would apply that use after the status change.
        """
        announced = self._announced.setdefault(partition, {})
        before = announced.get(key, (None, ()))
        if since is None and before[0] is None:
            return []  # nothing was announced: nothing to clear
        devices = tuple(d for d, _ in record.state.devices)
        if before == (since, devices):
            return []
        if since is None:
            announced.pop(key, None)
        else:
            announced[key] = (since, devices)
        account_id = key.decode()
        out = self._reset(partition)
        out.extend(Output(self.device_inbox, d.encode(), encode_pend(account_id, d, since))
                   for d in devices)
        out.extend(Output(self.device_inbox, d.encode(), encode_pend(account_id, d, None))
                   for d in before[1] if d not in devices)
        return out

    def _reset(self, partition: int) -> list[Output]:
        """Before this partition's first notice or mark since a start or a rebalance: the
        device stage forgets what it announced before (it cannot clear what it does not know
        it said)."""
        if partition in self._reset_sent:
            return []
        self._reset_sent.add(partition)
        value = encode_reset(partition)
        return [Output(self.device_inbox, None, value, q) for q in range(self.partitions)]

    def announce_pending(self, partitions: Iterable[int]) -> list[Output]:
        """`pend` notices not sent yet: after a start or a rebalance, for the accounts no
        batch has touched since (`marks` sends them before the partition's first mark)."""
        out = []
        for partition in partitions:
            announced = self._announced.setdefault(partition, {})
            for key, since in list(self.awaiting(partition).items()):
                if key not in announced:
                    out.extend(self.announce(partition, key, load_account(self.accounts.get(key)),
                                             since))
        return out

    def awaiting(self, partition: int) -> dict[bytes, int]:
        """Accounts of the partition that may still change status at an earlier time than
        their next input: key -> that time (`pending_since`)."""
        pending = self._pending.get(partition)
        if pending is None:
            self._scan(partition)
            pending = self._pending[partition]
        return pending

    # --- the frontier announced to the device stage ----------------------------------------
    def frontier(self, partition: int) -> int | None:
        """The lowest event time this partition may still send to a device (None: nothing
        holds it back), for the device stage's event-time merge (streams/device_stage.py).

        Requests leave in event-time order except for inputs not applied yet: those of a
        topic with a backlog (its newest received `ts` bounds the rest, as in `lift_clock`)
        or held for alignment. A caught-up partition holds nothing back: its next inputs
        are new. (Nor do its lifts not due yet: live, they fire when its own clock passes
        them, and holding the other partitions' requests for that clock would stall them
        whenever it is quiet.) An account whose status may still change at an older time (an
        input awaiting its reply) tells its own devices instead (`announce`): counting it
        here would hold every device behind a busy account's round trips.

        Items parked behind a reply, or a backlog while the partition is paused for replies
        (WARDEN_MAX_IN_FLIGHT), do not count: one older than the request it waits for
        arrived out of order (already unlike replay), and a paused backlog cannot move
        until the very requests it would hold are answered.
        """
        return self._unapplied(partition, backlog=partition not in self.paused)

    def marks(self, partitions: Iterable[int]) -> list[Output]:
        """A `mark` for every device partition from each of `partitions` whose frontier moved
        since it was last announced (or that has announced none since it was assigned)."""
        out = []
        for partition in partitions:
            if partition not in self._marks_sent:  # the first since a start or a rebalance:
                out.extend(self.announce_pending([partition]))  # the device stage knows them
                out.extend(self._reset(partition))  # (if nothing was announced yet)
            frontier = self.frontier(partition)
            if self._marks_sent.get(partition, _UNSENT) == frontier:
                continue
            self._marks_sent[partition] = frontier
            value = encode_mark(partition, frontier, self.generation)
            out.extend(Output(self.device_inbox, None, value, q) for q in range(self.partitions))
        return out

    def alignment_ticks(self, assigned: Iterable[int]) -> list[Output]:
        """A tick for each partition whose held inputs waited their full time with no batch to
        release them (a quiet partition)."""
        return [Output(self.account_inbox, None, encode_tick(self.clock(p) or 0), p)
                for p in self.alignment.due(assigned)]

    # --- clock and lifts ----------------------------------------------------------
    def clock(self, partition: int) -> int | None:
        raw = self.clocks.get(b"p%d" % partition)
        return None if raw is None else int(raw)

    def lifts(self, partition: int) -> list[tuple[int, str]]:
        """Due-lift heap of a partition, rebuilt from the state table on first use."""
        heap = self._lifts.get(partition)
        if heap is None:
            self._scan(partition)
            heap = self._lifts[partition]
        return heap

    def sweep(self, *, assigned: Iterable[int] | None = None, limit: int = 5000) -> Batch:
        """Expire state past every horizon, a slice per call (SPEC: bounded state).

        Windows and histories are pruned against the partition clock; accounts
        with nothing left are dropped, and `seen` ids older than the dedupe
        horizon are forgotten. Runs between batches, never during one: the worker
        holds the stage's state lock for both (`Warden.sweep`), since the pruned
        copies are written after awaits and would overwrite a batch written meanwhile.

        Only `assigned` partitions' records are swept (None: all). Faust's memory store
        forgets a revoked partition's keys only if it recovered them from the changelog,
        so a worker keeps the records it wrote itself of the partitions it lost; sweeping
        those would write this worker's stale copies into another owner's changelog,
        where its next recovery would read them as the newest.
        """
        batch = Batch()
        policy = self.policy
        horizon = policy.state.dedupe_horizon_ms
        clocks = {p: self.clock(p)
                  for p in (range(self.partitions) if assigned is None else assigned)}
        for key in self._slice("accounts", self.accounts, limit):
            raw = self.accounts.get(key)
            if raw is None:
                continue
            partition = partition_of(key, self.partitions)
            clock = clocks.get(partition)
            if clock is None:
                continue
            record = load_account(raw)
            if record.pending:
                continue
            kept = account.expire(record.state, now_ms=clock, policy=policy)
            forgot = record.forget_seen_before(clock - horizon + 1)
            if kept != record.state or forgot:
                record.state = kept
                value = record.encode(policy.state.dedupe_ids_kept)
                batch.writes[("accounts", key)] = (partition, value)
        return batch

    def _slice(self, name: str, store: MutableMapping[bytes, bytes], limit: int) -> list[bytes]:
        """The next `limit` keys of a store, resuming where the last sweep stopped."""
        cursor = self._cursors.get(name)
        if cursor is None:
            cursor = iter(list(store.keys()))
        keys = []
        for key in cursor:
            keys.append(key)
            if len(keys) >= limit:
                break
        else:
            cursor = None
        self._cursors[name] = cursor
        return keys

    def lift_clock(self, partition: int, clock: int) -> int:
        """The time lifts may fire at: `clock`, held back by inputs not applied yet.

        A topic-partition with records not yet received (its highwater is past
        the last offset received here) has only reached its newest received
        `ts`; firing a lift past that could pre-empt an event of that topic that
        replay would have seen first (a backlog after a restart or a lag).
        An unknown highwater (not fetched yet, e.g. just after a restart) holds
        lifts back too: the partition may hold a backlog. Inputs received but
        waiting in the alignment buffer have known times: a lift may fire up to
        the earliest of them (replay fires a lift before an event at its time).
        """
        unapplied = self._unapplied(partition, backlog=True)
        return clock if unapplied is None else min(clock, unapplied)

    def _unapplied(self, partition: int, *, backlog: bool) -> int | None:
        """The earliest event time of inputs not applied yet, if any may exist: the newest
        `ts` received from each input topic with records still on the broker (`backlog`),
        and the earliest input held for alignment."""
        times = []
        align = self.alignment
        for topic in self.names.inputs if backlog else ():
            key = (topic, partition)
            received = max(self.topic_offset.get(key, -1), align.received.get(key, -1))
            end = self._end(topic, partition)
            if end is not None and end <= received + 1:
                continue  # everything on the broker has reached this stage
            times.append(max(self.topic_ts.get(key, -1), align.newest.get(key, -1)))
        waiting = align.heap(partition)
        if waiting:
            times.append(waiting[0][0])
        return min(times) if times else None

    def stalled(self, assigned: Iterable[int], *, after_ms: int) -> list[tuple[str, int]]:
        """Input topic-partitions with records waiting on the broker and none handled for
        `after_ms` (liveness: a partition the consumer stopped delivering)."""
        now = self.wall_ms()
        out = []
        for partition in assigned:
            for topic in self.names.inputs:
                key = (topic, partition)
                end = self.highwater(topic, partition)
                if end is None or end <= self.topic_offset.get(key, -1) + 1:
                    self.progress_wall[key] = now  # nothing waiting: not stalled
                elif now - self.progress_wall.setdefault(key, now) > after_ms:
                    out.append(key)
        return out

    def report_lag(self, assigned: Iterable[int]) -> None:
        """`warden_consumer_lag`: highwater minus what was handled, per input partition."""
        for partition in assigned:
            for topic in self.names.inputs:
                end = self.highwater(topic, partition)
                if end is None:
                    continue
                handled = self.topic_offset.get((topic, partition), -1)
                lag = max(0, end - handled - 1)
                self.metrics.consumer_lag.labels(self.names.canonical(topic), str(partition)).set(lag)

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """On revocation/assignment: rebuild lift heaps from the (recovered) table."""
        partitions = list(partitions)
        for partition in partitions:
            self._lifts.pop(partition, None)
            self._pending.pop(partition, None)
            self._announced.pop(partition, None)  # the device stage may have lost them too
            self._reset_sent.discard(partition)
            self._gates.pop(partition, None)
            self._held_loaded.pop(partition, None)
            self._marks_sent.pop(partition, None)
            self.device_marks.pop(partition, None)  # (the device partitions announce again)
            self.device_marks_moved.pop(partition, None)
            self.in_flight.pop(partition, None)
            self.crowded_accounts.pop(partition, None)
            self.applied_ts.pop(partition, None)
        self.alignment.forget(partitions)
        self.decoded_kept.clear()  # (the recovered table decides)

    def idle_ticks(self, assigned: Iterable[int], *, grace_ms: int) -> list[Output]:
        """Advance idle partitions' clocks from the wall clock, so lifts still fire."""
        now = self.wall_ms()
        out = []
        for partition in assigned:
            clock = self.clock(partition)
            last_wall = self.last_event_wall.get(partition)
            if clock is None or last_wall is None or now - last_wall < grace_ms:
                continue
            target = clock + (now - last_wall) - grace_ms
            heap = self.lifts(partition)
            if heap and heap[0][0] <= target:
                out.append(Output(self.account_inbox, None, encode_tick(target), partition))
        return out


class _Work:
    """One batch in progress: decoded state cached per key, written once at the end."""

    def __init__(self, stage: AccountStage) -> None:
        self.stage = stage
        self.batch = Batch()
        self.records: dict[bytes, AccountRecord] = {}
        self.dirty: dict[bytes, int] = {}
        self.clocks: dict[int, int] = {}
        self.arrivals = 0
        self.replied: set[int] = set()  # partitions that had a cross-key reply this batch
        # `dmark`s of this batch per account partition, applied at its end
        self.device_marks: dict[int, dict[int, int]] = {}
        # counted here and added to the metrics once per batch (`finish`): prometheus-client
        # takes a lock per `inc`, twice per input
        self.events_in: dict[str, int] = {}
        self.settled = 0

    def parse(self, rec: Record) -> tuple[int, int, Record, object]:
        """(ts, arrival, record, Event | Rejected | Message | tick ts) for sorting."""
        self.arrivals += 1
        topic = self.stage.names.canonical(rec.topic)
        if topic in INPUT_TOPICS_SET:
            self.events_in[topic] = self.events_in.get(topic, 0) + 1
            event = decode(topic, rec.value or b"")
            if isinstance(event, Rejected):
                return (-1, self.arrivals, rec, event)
            key = key_of(event)
            if rec.key is None or rec.key != key.encode():
                rejected = Rejected("key_mismatch", f"message key must be the account id {key!r}"[:200])
                return (-1, self.arrivals, rec, rejected)
            return (event.ts, self.arrivals, rec, event)
        if rec.value is not None and rec.value.startswith(b'["tick"'):
            ts = int(orjson.loads(rec.value)[1])
            return (ts, self.arrivals, rec, ts)
        if rec.value is not None and rec.value.startswith(b'["dmark"'):
            mark = orjson.loads(rec.value)
            return (-1, self.arrivals, rec,
                    _DeviceMark(mark[1], mark[2], fresh(mark, self.stage.generation)))
        msg = codec.decode_message(rec.value or b"")
        return (msg.ts, self.arrivals, rec, msg)

    def apply(self, rec: Record, item: object) -> None:
        stage, metrics = self.stage, self.stage.metrics
        if isinstance(item, Rejected):
            self.reject(rec, item)  # only inputs are rejected by `parse`
            self.settled += 1
        elif isinstance(item, int):  # a tick from the idle clock
            self.advance(rec.partition, item)
        elif isinstance(item, _DeviceMark):
            if not item.fresh:
                return  # a previous owner's promise (after a restart or a rebalance)
            self.device_marks.setdefault(rec.partition, {})[item.partition] = (
                UNBOUNDED if item.frontier is None else item.frontier)
        elif isinstance(item, INPUT_TYPES):
            topic_partition = (rec.topic, rec.partition)
            stage.topic_ts[topic_partition] = max(item.ts, stage.topic_ts.get(topic_partition, item.ts))
            self.advance(rec.partition, item.ts)
            stage.last_event_wall[rec.partition] = stage.wall_ms()
            account_id = key_of(item)
            if self.first_sighting(account_id, item.event_id, rec.partition):
                self.deliver(rec, account_id, item)
            else:
                metrics.duplicates.labels(stage.names.canonical(rec.topic)).inc()
                self.settled += 1
            # handled only now: lifts its backlog was holding back may fire
            stage.topic_offset[topic_partition] = max(rec.offset, stage.topic_offset.get(topic_partition, -1))
            stage.progress_wall[topic_partition] = stage.last_event_wall[rec.partition]
            self.fire_due_by(rec.partition, self.clock(rec.partition))
        else:
            msg: Any = item
            if isinstance(msg, DeviceChecked | ReportWeighed):
                self.reply(rec, msg)  # matched to its flight slot: a repeat finds none
            elif isinstance(msg, ReportsJudged) and not self.first_sighting(
                    msg.account_id, msg.msg_id, rec.partition):
                return
            else:  # the rest are idempotent: weighing, evasion notices, lifts
                self.handle(rec, msg.account_id, msg)

    # --- per-account causal order ------------------------------------------------
    def deliver(self, rec: Record | None, account_id: str, item: object) -> None:
        """An input (or due lift) of the account, in the order `warden replay` applies them.

        While the account awaits a cross-key reply, later non-hop inputs park
        behind it; hop inputs (device uses, reports) are sent at once, so
        several can be in flight, and their replies are applied in send order.
        """
        key = account_id.encode()
        pending = self.record(key).pending
        if pending.parked or (pending.flight and not needs_hop(item)):
            pending.parked.append(park(rec, item))
            self.dirty[key] = self.partition_for(rec, key)
            return
        if self.gated(account_id, self.partition_for(rec, key), getattr(item, "ts", None)):
            if rec is not None:  # (a lift: the gate is the lift)
                pending.parked.append(park(rec, item))
            self.dirty[key] = self.partition_for(rec, key)
            return
        self.send_off(rec, account_id, item)
        if needs_hop(item):
            self.dirty[key] = self.partition_for(rec, key)

    def send_off(self, rec: Record | None, account_id: str, item: object) -> None:
        """Apply an input; one that needs a cross-key reply takes its flight slot first, so
        a lift the clock already passed waits for it (`lift_if_due` after the input)."""
        if needs_hop(item):
            pending = self.record(account_id.encode()).pending
            slot = [item.event_id, None, item.ts]  # type: ignore[attr-defined]
            if not isinstance(item, MessageReported):
                slot.append(USE)
            pending.flight.append(slot)
            partition = self.partition_for(rec, account_id.encode())
            in_flight = self.stage.in_flight
            in_flight[partition] = in_flight.get(partition, 0) + 1
        elif rec is not None:  # an input (not a lift) applied now, with nothing to wait for
            self.settled += 1
        self.handle(rec, account_id, item)

    def reply(self, rec: Record, msg: DeviceChecked | ReportWeighed) -> None:
        key = msg.account_id.encode()
        pending = self.record(key).pending
        slot = next((s for s in pending.flight if s[0] == msg.event_id and s[1] is None), None)
        if slot is None:  # a redelivered answer: its request was already settled
            return
        slot[1] = msg
        self.dirty[key] = rec.partition
        stage = self.stage
        stage.in_flight[rec.partition] = max(0, stage.in_flight.get(rec.partition, 0) - 1)
        self.replied.add(rec.partition)
        self.drain(rec, msg.account_id, rec.partition)

    def drain(self, rec: Record | None, account_id: str, partition: int) -> None:
        """Apply the replies ready in send order, then send off what was parked behind them."""
        pending = self.record(account_id.encode()).pending
        names = self.stage.names
        while pending.flight and pending.flight[0][1] is not None:
            ready = pending.flight.pop(0)[1]
            self.handle(rec, account_id, ready)
            self.settled += 1  # the input that sent the request
        while pending.parked and not pending.flight:
            parked_rec, item = unpark(names, pending.parked[0])
            if self.gated(account_id, partition, getattr(item, "ts", None)):
                break  # it stays parked, behind the lift
            pending.parked.pop(0)
            self.send_off(parked_rec, account_id, item)
        # hop inputs parked behind the last non-hop one can go out together
        while pending.parked:
            parked_rec, item = unpark(names, pending.parked[0])  # (decoded once, not twice)
            if not needs_hop(item):
                break
            pending.parked.pop(0)
            self.send_off(parked_rec, account_id, item)

    # --- lifts another account can still extend ------------------------------------------
    def gated(self, account_id: str, partition: int, ts: int | None) -> bool:
        """Must the account's lift wait, with the item at `ts` parked behind it?

        Another account using a device of a restricted account (level >= the
        ban_evasion minimum) extends its restriction, with a `DeviceMatched` at
        the use's time, from the device stage. Replay extends before a lift due
        later; live the notice can still be on its way when this partition's
        clock passes `lift_at`. So such a lift, due now, waits (a flight slot
        with no id, first in the account's queue, so replies and inputs after it
        wait too) until every device partition's frontier has passed it
        (`open_gates`), or `gate_wait_ms` of wall time and as long since the
        last of the device partitions holding it back moved (`moving_frontier`).
        """
        if ts is None:
            return False
        key = account_id.encode()
        r = self.state(key).lifecycle.restriction
        stage = self.stage
        if r is None or r.lift_at is None or r.lift_at > ts \
                or r.level < stage.policy.ban_evasion.min_level \
                or r.lift_at <= stage.device_frontier(partition) \
                or r.lift_at > stage.lift_clock(partition, self.clock(partition)):
            return False
        pending = self.record(key).pending
        if any(slot[0] is None for slot in pending.flight):
            return True
        oldest = pending.oldest_ts()
        if oldest is not None and oldest < r.lift_at:
            return False  # older items go first; the lift waits for them anyway
        pending.flight.insert(0, [None, None, r.lift_at])
        stage.gates(partition)[key] = (r.lift_at, stage.wall_ms())
        self.dirty[key] = partition
        return True

    def open_gates(self, partition: int) -> None:
        """Fire the waiting lifts the device stage's frontier passed (or that waited long)."""
        stage = self.stage
        gates = stage.gates(partition)
        if not gates:
            return
        frontier, now = stage.device_frontier(partition), stage.wall_ms()
        moving = stage.moving_frontier(partition, now)
        for key, (lift_at, since) in list(gates.items()):
            if lift_at > frontier and (now - since < stage.gate_wait_ms or lift_at > moving):
                continue
            del gates[key]
            pending = self.record(key).pending
            pending.flight = [slot for slot in pending.flight if slot[0] is not None]
            self.dirty[key] = partition
            account_id = key.decode()
            stage.metrics.lifts_fired.inc()  # (a no-op if a notice extended it meanwhile)
            self._apply(None, account_id, LiftDue(f"{account_id}>lift>{lift_at}", lift_at,
                                                  account_id), partition)
            self.drain(None, account_id, partition)

    def partition_for(self, rec: Record | None, key: bytes) -> int:
        return rec.partition if rec is not None else partition_of(key, self.stage.partitions)

    def handle(self, rec: Record | None, account_id: str, msg: object) -> None:
        """Apply one message; a lift the clock already passed fires first and after.

        A reply can land after the clock moved past a restriction's `lift_at`
        (pipelined cross-key answers); replay would have lifted before anything
        else touched the account, so the same happens here, per account.
        """
        key = account_id.encode()
        partition = self.partition_for(rec, key)
        record = self.record(key)
        # (most accounts are not restricted: no lift to look for, before or after)
        if record.state.lifecycle.restriction is not None:
            self.lift_if_due(account_id, partition, before_ts=getattr(msg, "ts", None))
        self._apply(rec, account_id, msg, partition)
        if record.state.lifecycle.restriction is not None:
            self.lift_if_due(account_id, partition)

    def lift_if_due(self, account_id: str, partition: int, *, before_ts: int | None = None) -> None:
        """Fire the account's lift where replay would: once the clock (held back by lagging
        topics) passed it, and neither the item about to be applied (`before_ts`) nor any
        of the account's own pending items is older than it."""
        key = account_id.encode()
        r = self.state(key).lifecycle.restriction
        if r is None or r.lift_at is None:
            return
        if before_ts is not None and before_ts < r.lift_at:
            return  # the item goes first
        oldest = self.record(key).pending.oldest_ts()
        if oldest is not None and oldest < r.lift_at:
            return  # so do older items still waiting for their replies
        if r.lift_at <= self.stage.lift_clock(partition, self.clock(partition)):
            if self.gated(account_id, partition, r.lift_at):
                return
            self.stage.metrics.lifts_fired.inc()
            self._apply(None, account_id, LiftDue(f"{account_id}>lift>{r.lift_at}", r.lift_at,
                                                  account_id), partition)

    def _apply(self, rec: Record | None, account_id: str, msg: object, partition: int) -> None:
        stage = self.stage
        key = account_id.encode()
        state = self.state(key)
        now = self.clock(partition)
        outcome = account.handle(state, msg, now_ms=now, policy=stage.policy)
        if outcome.state is not state:
            self.record(key).state = outcome.state
            self.dirty[key] = partition
        if outcome.rejected is not None and rec is not None:
            self.reject(rec, outcome.rejected)
        for decision in outcome.decisions:
            self.emit(decision, rec)
        if outcome.decisions:
            r = outcome.state.lifecycle.restriction
            if r is not None and r.lift_at is not None:
                heapq.heappush(stage.lifts(partition), (r.lift_at, account_id))
        for out in outcome.outbox:
            self.send(out)

    def emit(self, decision: Decision, rec: Record | None) -> None:
        metrics = self.stage.metrics
        self.batch.decisions.append(decision)
        self.batch.outputs.append(Output(self.stage.names.decisions, decision.account_id.encode(),
                                         decision.to_json()))
        metrics.decided(decision)
        if rec is not None and rec.timestamp_ms and rec.topic != self.stage.account_inbox:
            metrics.latency.observe(max(0, self.stage.wall_ms() - rec.timestamp_ms) / 1000)

    def send(self, msg: Message) -> None:
        if isinstance(msg, AccountOnDevice):
            topic, key = self.stage.device_inbox, msg.device_id
        else:
            topic, key = self.stage.account_inbox, msg.account_id
        self.batch.outputs.append(Output(topic, key.encode(), codec.encode_message(msg)))

    def reject(self, rec: Record, rejected: Rejected) -> None:
        self.stage.metrics.invalid.labels(self.stage.names.canonical(rec.topic), rejected.code).inc()
        value = dead_letter(rec.topic, rec.partition, rec.offset, rec.key, rec.value, rejected,
                            rejected_at=self.stage.wall_ms())
        self.batch.outputs.append(Output(self.stage.names.dead_letters, dead_letter_key(rec.key),
                                         value))

    # --- state, dedupe, clock ---------------------------------------------------------
    def record(self, key: bytes) -> AccountRecord:
        record = self.records.get(key)
        if record is None:
            raw = self.stage.accounts.get(key)
            kept = self.stage.decoded_kept.pop(key, None)
            # (taken out: a batch that changes it without writing it cannot leave it stale)
            record = kept[1] if kept is not None and raw == kept[0] else load_account(raw)
            self.records[key] = record
        return record

    def state(self, key: bytes) -> AccountState:
        return self.record(key).state

    def first_sighting(self, account_id: str, msg_id: str, partition: int) -> bool:
        """Dedupe within the account's own record, so it is written atomically with its effects."""
        key = account_id.encode()
        record = self.record(key)
        now = self.clock(partition)
        first = record.seen.get(msg_id)
        if first is not None and now - first < self.stage.policy.state.dedupe_horizon_ms:
            return False
        record.see(msg_id, now)
        self.dirty[key] = partition
        return True

    def clock(self, partition: int) -> int:
        clock = self.clocks.get(partition)
        if clock is None:
            clock = self.stage.clock(partition) or 0
            self.clocks[partition] = clock
        return clock

    def advance(self, partition: int, ts: int) -> None:
        """Lifts the clock passes fire first, in (lift_at, account_id) order.

        Lifts wait for every input topic of the partition (`lift_clock`), so a
        backlog in one topic cannot make them fire early.
        """
        # (an item behind the clock, from a late topic or redelivered after a crash that kept
        # the clock but not every account's record, goes before lifts due after its ts)
        self.clock(partition)  # (read first: lifts that fire move it)
        self.fire_due_by(partition, ts)
        self.clocks[partition] = max(self.clocks[partition], ts)

    def fire_due_by(self, partition: int, clock: int) -> None:
        """`fire_due` up to `clock` held back by inputs not applied yet (`lift_clock`), which
        is only worked out when a lift is due by `clock` at all (most inputs have none)."""
        heap = self.stage.lifts(partition)
        if heap and heap[0][0] <= clock:
            self.fire_due(partition, self.stage.lift_clock(partition, clock))

    def fire_due(self, partition: int, until: int) -> None:
        heap = self.stage.lifts(partition)
        while heap and heap[0][0] <= until:
            lift_at, account_id = heapq.heappop(heap)
            r = self.state(account_id.encode()).lifecycle.restriction
            if r is None or r.lift_at != lift_at:
                continue
            oldest = self.record(account_id.encode()).pending.oldest_ts()
            if oldest is not None and oldest < lift_at:
                continue  # its own older items go first; lift_if_due fires it after them
            self.clocks[partition] = max(self.clocks[partition], lift_at)
            self.deliver(None, account_id, LiftDue(f"{account_id}>lift>{lift_at}", lift_at, account_id))

    def finish(self) -> None:
        stage = self.stage
        for topic, count in self.events_in.items():
            stage.metrics.event_in(topic, count)
        if self.settled:
            stage.metrics.settled.inc(self.settled)
        if self.replied:  # a partition paused for its replies and getting them is not stalled
            now = stage.wall_ms()
            for partition in self.replied:
                for topic in stage.names.inputs:
                    stage.progress_wall[(topic, partition)] = now
        decoded_kept = stage.decoded_kept
        ids_kept = stage.policy.state.dedupe_ids_kept
        largest = 0
        for key, partition in self.dirty.items():
            record = self.records[key]
            value = record.encode(ids_kept)
            # (a hot account's record is big to decode: 2.6 ms with 10,000 dedupe ids)
            if value is not None and (record.pending.flight or record.sealed):
                value = compact(value)  # (kept: not orjson's 4 KiB block)
                if len(decoded_kept) < DECODED_KEPT:
                    decoded_kept[key] = (value, record)
            self.batch.writes[("accounts", key)] = (partition, value)
            if value is not None and len(value) > largest:
                largest = len(value)
            waiting = len(record.pending.flight) + len(record.pending.parked)
            if waiting >= ACCOUNT_PENDING_PAUSE:
                stage.crowded_accounts.setdefault(partition, {})[key] = waiting
            elif waiting <= ACCOUNT_PENDING_PAUSE // 2:
                crowded = stage.crowded_accounts.get(partition)
                if crowded:
                    crowded.pop(key, None)
            since = pending_since(record, stage.policy)
            awaiting = stage.awaiting(partition)
            if since is not None:
                awaiting[key] = since
            else:
                awaiting.pop(key, None)
            self.batch.outputs.extend(stage.announce(partition, key, record, since))
        if largest:
            stage.metrics.record_bytes.observe(largest)
        for partition, clock in self.clocks.items():
            if clock and clock != (stage.clock(partition) or 0):
                self.batch.writes[("clocks", b"p%d" % partition)] = (partition, b"%d" % clock)
                stage.metrics.clock_ms.labels(str(partition)).set(clock)
