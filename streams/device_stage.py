"""The device stage's batch runner: accounts on each device, and the device triggers.

Requests reach a device partition from every account partition, each in its
own order; after a restart or under lag the account partitions are at
different event times. Applied in arrival order, a use at 12:00 from a
partition that raced ahead could be checked before a restriction at 11:00
from one still draining its backlog — a `ban_evasion` replay would see is
missed. So requests wait here, in one queue per device, until every account
partition's *frontier* (the lowest event time it may still send, streams/
stages.py `AccountStage.frontier`, announced by `mark` messages on the
device inbox) has reached them, and leave in (ts, account partition, arrival)
order: a deterministic event-time merge of the account partitions (the
watermarks of Flink and Kafka Streams, over one internal hop). A use also
waits while another account of its device may still change status at an
older time (`pend` notices: an input of that account awaiting its reply, or
a lift `ban_evasion` reads); other devices do not wait for it. A request
waits at most `hop_wait_ms` of wall time for a partition that stopped
announcing (its worker gone), so it delays the others but cannot stop them;
a partition whose frontier keeps moving is draining a backlog, not gone, and
is waited for while it moves, up to `hop_wait_ms` after it last moved (as the
input alignment waits for a topic with a known backlog, streams/alignment.py).
Counted from the request's arrival only, a worker that had finished its own
backlog applied 3,228 requests after 10 s each while another worker's
partition, moving but a day of event time behind, could still send older
ones (tests/integration/test_two_workers.py).

Waiting requests and pending notices are kept in the `device-held` table,
written with the batch that holds them and deleted with the one that applies
them, so a crash leaves each either held or applied (its offset is acked
either way) and the log re-read after it rebuilds the rest in order.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import orjson

from detectors import codec, device
from detectors.config import Policy
from detectors.device import DeviceState
from detectors.messages import AccountOnDevice
from streams.records import Batch, Output, Record, partition_of
from streams.topics import TopicNames

HOP_WAIT_MS = 10_000
# A use held by another account's pending status waits while that account's partition is
# moving, but at most this many hop waits: a status that never settles (a lost notice) must
# not hold its device's uses for ever
PEND_WAIT_HOPS = 6
# a frontier of None means "holds nothing back" (the partition is caught up, with nothing due)
UNBOUNDED = 1 << 62
UNKNOWN = -(1 << 62)  # no mark heard from the partition yet: everything waits for it
_UNSENT = object()


def encode_mark(partition: int, frontier: int | None, generation: int = 0) -> bytes:
    """An account partition's frontier, for every device partition (key None), from the
    consumer group generation it was assigned in (`fresh`)."""
    return orjson.dumps(["mark", partition, frontier, generation])


def encode_pend(account_id: str, device_id: str, since: int | None) -> bytes:
    """The oldest time the account may still change status at (None: it may not)."""
    return orjson.dumps(["pend", account_id, device_id, since])


def encode_reset(partition: int) -> bytes:
    """An account partition starts announcing afresh: forget what it announced before."""
    return orjson.dumps(["reset", partition])


def encode_device_mark(partition: int, frontier: int | None, generation: int = 0) -> bytes:
    """A device partition's frontier, for every account partition (key None), from the
    consumer group generation it was assigned in (`fresh`)."""
    return orjson.dumps(["dmark", partition, frontier, generation])


def fresh(mark: list[Any], generation: int) -> bool:
    """Whether a `mark` or `dmark` binds a stage assigned in `generation`.

    A frontier is a promise of the stage incarnation that sent it. After a restart or a
    rebalance the inboxes are read again from their committed offsets, so the marks the
    previous owners sent are read again too; but the new owners read their own inputs
    again from the committed offsets and may still send what the old ones had promised
    not to. A restarted device stage that took such marks announced "nothing holds back"
    before its account partitions' own first marks reached it, and an evaded account's
    lift fired ahead of the `ban_evasion` notice that extends it (1 run in 3 of the
    kill -9 restart test under CPU load). Marks from an older generation (or without
    one: workers before this check) count as not heard."""
    return len(mark) > 3 and mark[3] >= generation


def note_frontier(heard: dict[int, int], moved: dict[int, int], source: int, frontier: int,
                  now: int) -> None:
    """Record a partition's announced frontier, and the wall time it last changed (a repeated
    mark is not a move)."""
    if heard.get(source) != frontier:
        heard[source], moved[source] = frontier, now


def lowest_moving(heard: dict[int, int], moved: dict[int, int], since: int) -> int:
    """The lowest frontier among the partitions whose frontier changed after `since`
    (UNBOUNDED: none did). One still moving is draining a backlog, not gone: what it holds
    back waits past the wall-time limit until it stops moving for that long."""
    return min((heard[p] for p, at in moved.items() if at > since and p in heard),
               default=UNBOUNDED)


def _notice_key(partition: int, device_id: str, account_id: str) -> bytes:
    """`device-held` key of a pending notice (`_queues_of` reads them back)."""
    return b"%d:p:%s\x00%s" % (partition, device_id.encode(), account_id.encode())


class _Heads:
    """The heads of one device partition's request queues, by event time and by wall time
    in, so a batch visits only the devices that may release something, in the queues' own
    order, and the frontier needs no scan (issue #5: `_release` walked every waiting device
    of a partition per batch, 5% of the worker's time under a backlog). Heap items go
    stale as heads change; they are checked against the queue when taken, and the heaps
    are rebuilt once they hold far more items than there are queues."""

    def __init__(self) -> None:
        self.by_ts: list[tuple[int, int, str]] = []
        self.by_wall: list[tuple[int, int, str]] = []
        self.order: dict[str, int] = {}  # device id -> its queue's place (creation order)
        self._next = 0
        self.held = 0  # requests in the partition's queues

    def new_queue(self, device_id: str) -> None:
        self.order[device_id] = self._next
        self._next += 1

    def dropped(self, device_id: str) -> None:
        del self.order[device_id]

    def head(self, device_id: str, entry: list[Any]) -> None:
        """`entry` is (now) the head of the device's queue."""
        place = self.order[device_id]
        heapq.heappush(self.by_ts, (entry[0], place, device_id))
        heapq.heappush(self.by_wall, (entry[3], place, device_id))

    def _live(self, item: tuple[int, int, str], field: int,
              queues: dict[str, list[list[Any]]]) -> bool:
        queue = queues.get(item[2])
        return (queue is not None and self.order.get(item[2]) == item[1]
                and queue[0][field] == item[0])

    def due(self, queues: dict[str, list[list[Any]]], low: int, waited_since: int) -> list[str]:
        """Devices whose head is at or before `low`, or came in at or before `waited_since`,
        in the queues' order (their items are taken: `head` them again if still waiting)."""
        found: dict[str, int] = {}
        for heap, field, bound in ((self.by_ts, 0, low), (self.by_wall, 3, waited_since)):
            while heap and heap[0][0] <= bound:
                item = heapq.heappop(heap)
                if self._live(item, field, queues):
                    found[item[2]] = item[1]
        return sorted(found, key=found.__getitem__)

    def earliest(self, queues: dict[str, list[list[Any]]], field: int) -> int | None:
        """The earliest head's `ts` (field 0) or wall time in (field 3), None when empty."""
        heap = self.by_ts if field == 0 else self.by_wall
        if len(heap) > 4 * len(queues) + 64:  # mostly stale: rebuilt from the heads
            self.by_ts = [(q[0][0], self.order[d], d) for d, q in queues.items()]
            self.by_wall = [(q[0][3], self.order[d], d) for d, q in queues.items()]
            heapq.heapify(self.by_ts)
            heapq.heapify(self.by_wall)
            heap = self.by_ts if field == 0 else self.by_wall
        while heap and not self._live(heap[0], field, queues):
            heapq.heappop(heap)
        return heap[0][0] if heap else None


class DeviceStage:
    """The device-keyed stage: accounts on a device, and the device triggers."""

    def __init__(self, *, policy: Policy, names: TopicNames,
                 devices: MutableMapping[bytes, bytes], partitions: int = 1,
                 held: MutableMapping[bytes, bytes] | None = None,
                 wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 hop_wait_ms: int = HOP_WAIT_MS) -> None:
        self.policy = policy
        self.devices = devices
        self.partitions = partitions  # account partitions (the inbox has as many)
        self.held = {} if held is None else held
        self.wall_ms = wall_ms
        self.hop_wait_ms = hop_wait_ms
        self.clocks: dict[int, int] = {}  # only ages out old entries; need not survive restarts
        self._cursor = 0
        self.account_inbox = names.account_inbox
        self.device_inbox = names.device_inbox
        # device partition -> account partition -> its last frontier (UNBOUNDED for None)
        self.heard: dict[int, dict[int, int]] = {}
        # device partition -> account partition -> wall time its frontier last changed
        self.moved: dict[int, dict[int, int]] = {}
        # device partition -> device id -> held requests (see `_hold`)
        self._queues: dict[int, dict[str, list[list[Any]]]] = {}
        self._heads: dict[int, _Heads] = {}  # device partition -> its queues' heads
        # device id -> account id -> the oldest event time it may still change status at
        # (`pend` notices from the account stage: inputs awaiting replies, due lifts)
        self.pending: dict[str, dict[str, int]] = {}
        self._arrivals = 0
        self._dmarks_sent: dict[int, object] = {}
        self.generation = 0  # the consumer group's, set by the app on each assignment
        self._fresh: list[tuple[int, list[Any]]] = []  # held in this batch, not written yet
        self.timed_out = 0  # requests applied after hop_wait_ms, before every frontier passed

    # --- per batch ---------------------------------------------------------------------
    def process(self, records: Iterable[Record]) -> Batch:
        """Hold each request, note each mark and pending notice, then apply what is free."""
        batch = Batch()
        touched: dict[int, None] = {}
        for rec in records:
            value = rec.value or b""
            touched[rec.partition] = None
            if value.startswith(b'["mark"'):
                mark = orjson.loads(value)
                if fresh(mark, self.generation):
                    note_frontier(self.heard.setdefault(rec.partition, {}),
                                  self.moved.setdefault(rec.partition, {}), mark[1],
                                  UNBOUNDED if mark[2] is None else mark[2], self.wall_ms())
                continue
            if value.startswith(b'["tick"'):
                continue  # (the partition is touched: `_release` runs for it)
            if value.startswith(b'["reset"'):
                self._forget_pending(rec.partition, orjson.loads(value)[1], batch)
                continue
            if value.startswith(b'["pend"'):
                _, account_id, device_id, ts = orjson.loads(value)
                self._queues_of(rec.partition)  # (loads the partition's notices first)
                pending = self.pending.setdefault(device_id, {})
                if ts is None:
                    pending.pop(account_id, None)
                    if not pending:
                        del self.pending[device_id]
                else:
                    pending[account_id] = ts
                # kept with the requests: after a crash the log is re-read from the
                # committed offset only, and marks after it assume the notices before it
                batch.writes[("device-held", _notice_key(rec.partition, device_id, account_id))] = (
                    rec.partition, None if ts is None else b"%d" % ts)
                continue
            msg = codec.decode_message(value)
            assert isinstance(msg, AccountOnDevice), type(msg)
            self._hold(rec.partition, msg, value)
        self._release(touched, batch)
        batch.outputs.extend(self.marks(touched))
        return batch

    def due_ticks(self, partitions: Iterable[int]) -> list[Output]:
        """A tick for each partition with a request that waited `hop_wait_ms`, or a frontier
        not announced yet: the batch it starts releases or announces it (device records
        change only in the stage's own batches, never from a timer racing one)."""
        now = self.wall_ms()
        out = []
        for partition in partitions:
            queues = self._queues_of(partition)
            oldest = self._heads[partition].earliest(queues, 3)
            if partition not in self._dmarks_sent or (
                    oldest is not None and now - oldest >= self.hop_wait_ms):
                out.append(Output(self.device_inbox, None, b'["tick"]', partition))
        return out

    def frontier(self, partition: int) -> int | None:
        """The lowest event time this device partition may still answer or notify at (None:
        nothing holds it back): its earliest held request, or what every account partition
        may still send it. Evaded accounts' lifts wait for it (streams/stages.py)."""
        queues = self._queues_of(partition)
        earliest = self._heads[partition].earliest(queues, 0)
        low = min(UNBOUNDED if earliest is None else earliest, self.low_mark(partition))
        return None if low >= UNBOUNDED else low

    def marks(self, partitions: Iterable[int]) -> list[Output]:
        """A `dmark` for every account partition from each device partition whose frontier
        moved since it was last announced."""
        out = []
        for partition in partitions:
            frontier = self.frontier(partition)
            if self._dmarks_sent.get(partition, _UNSENT) == frontier:
                continue
            self._dmarks_sent[partition] = frontier
            value = encode_device_mark(partition, frontier, self.generation)
            out.extend(Output(self.account_inbox, None, value, p) for p in range(self.partitions))
        return out

    def low_mark(self, partition: int) -> int:
        """Lowest frontier over the account partitions, as this device partition heard them."""
        marks = self.heard.get(partition, {})
        return min(marks.get(p, UNKNOWN) for p in range(self.partitions))

    def moving_mark(self, partition: int, now: int) -> int:
        """Lowest frontier over the account partitions whose frontier moved in the last
        `hop_wait_ms` (UNBOUNDED: none did): a request later than it waits past `hop_wait_ms`
        for a partition still draining toward it; one the stopped partitions alone hold
        back leaves after `hop_wait_ms`."""
        return lowest_moving(self.heard.get(partition, {}), self.moved.get(partition, {}),
                             now - self.hop_wait_ms)

    def waiting(self) -> dict[int, int]:
        """Requests held per device partition (for the gauge)."""
        return {p: self._heads[p].held for p in self._queues}

    def forget_partitions(self, partitions: Iterable[int]) -> None:
        """On revocation/assignment: held requests are reloaded from the (recovered) table."""
        for partition in partitions:
            self._queues.pop(partition, None)
            self._heads.pop(partition, None)
            for device_id in [d for d in self.pending
                              if partition_of(d.encode(), self.partitions) == partition]:
                del self.pending[device_id]  # reloaded with the queues
            self._dmarks_sent.pop(partition, None)
            self.heard.pop(partition, None)  # the account partitions announce again
            self.moved.pop(partition, None)

    # --- the merge ----------------------------------------------------------------------
    def _queues_of(self, partition: int) -> dict[str, list[list[Any]]]:
        """The partition's held requests, one queue (a heap) per device, loaded from the
        table on first use (after a start or a rebalance)."""
        queues = self._queues.get(partition)
        if queues is None:
            queues = {}
            prefix, notice = b"%d:h:" % partition, b"%d:p:" % partition
            now = self.wall_ms()
            for key, raw in list(self.held.items()):
                if key.startswith(notice):
                    device_id, _, account_id = key[len(notice):].partition(b"\x00")
                    self.pending.setdefault(device_id.decode(), {})[account_id.decode()] = int(raw)
                elif key.startswith(prefix):
                    arrival, _, value = raw.partition(b" ")
                    msg = codec.decode_message(value)
                    self._arrivals = max(self._arrivals, int(arrival))
                    queues.setdefault(msg.device_id, []).append(
                        [msg.ts, partition_of(msg.account_id.encode(), self.partitions),
                         int(arrival), now, key, msg, value, True])
            heads = self._heads[partition] = _Heads()
            for device_id, queue in queues.items():
                heapq.heapify(queue)
                heads.new_queue(device_id)
                heads.head(device_id, queue[0])
                heads.held += len(queue)
            self._queues[partition] = queues
        return queues

    def _hold(self, partition: int, msg: AccountOnDevice, value: bytes) -> None:
        queues = self._queues_of(partition)  # loaded first: arrivals continue after its own
        self._arrivals += 1
        source = partition_of(msg.account_id.encode(), self.partitions)
        key = b"%d:h:%s" % (partition, msg.msg_id.encode())
        # [ts, source, arrival, wall_in, table key, message, raw, written to the table
        # (None once applied)]
        entry = [msg.ts, source, self._arrivals, self.wall_ms(), key, msg, value, False]
        heads = self._heads[partition]
        queue = queues.get(msg.device_id)
        if queue is None:
            queue = queues[msg.device_id] = []
            heads.new_queue(msg.device_id)
        heapq.heappush(queue, entry)
        heads.held += 1
        if queue[0] is entry:
            heads.head(msg.device_id, entry)
        self._fresh.append((partition, entry))

    def _forget_pending(self, partition: int, source: int, batch: Batch) -> None:
        """Drop what the account partition `source` announced for this partition's devices
        (it announces afresh after a start: what it said before may never be cleared)."""
        self._queues_of(partition)  # (loads the partition's notices first)
        for device_id in list(self.pending):
            if partition_of(device_id.encode(), self.partitions) != partition:
                continue
            pending = self.pending[device_id]
            for account_id in [a for a in pending
                               if partition_of(a.encode(), self.partitions) == source]:
                del pending[account_id]
                batch.writes[("device-held", _notice_key(partition, device_id, account_id))] = (
                    partition, None)
            if not pending:
                del self.pending[device_id]

    def _waits(self, entry: list[Any], low: int) -> bool:
        """Must this request wait? Some account partition may still send an older one, or
        another account on its device may still change status at an older time."""
        ts = entry[0]
        if ts > low:
            return True
        pending = self.pending.get(entry[5].device_id)
        if pending:
            account_id = entry[5].account_id
            return any(t < ts for a, t in pending.items() if a != account_id)
        return False

    def _pending_moves(self, entry: list[Any], partition: int, now: int) -> bool:
        """Is the use held by the pending status of another account whose partition's frontier
        moved in the last `hop_wait_ms`? That account's reply is on its way through a merge
        still draining (its own request waits for a frontier), not lost: counted from the
        use's arrival, 10 s let uses go ahead of the status change they waited for, and
        `ban_evasion` decisions were missed (tests/integration/test_two_workers.py)."""
        pending = self.pending.get(entry[5].device_id)
        if not pending:
            return False
        moved, since = self.moved.get(partition, {}), now - self.hop_wait_ms
        ts, account_id = entry[0], entry[5].account_id
        return any(t < ts and moved.get(partition_of(a.encode(), self.partitions), since) > since
                   for a, t in pending.items() if a != account_id)

    def _release(self, partitions: Iterable[int], batch: Batch) -> None:
        now = self.wall_ms()
        states: dict[bytes, tuple[int, DeviceState]] = {}
        for partition in partitions:
            queues = self._queues_of(partition)
            heads = self._heads[partition]
            low, moving = self.low_mark(partition), self.moving_mark(partition, now)
            # only devices whose head may leave: at or before `low`, or waited too long
            for device_id in heads.due(queues, low, now - self.hop_wait_ms):
                queue = queues[device_id]
                while queue:
                    entry = queue[0]
                    if self._waits(entry, low):
                        waited = now - entry[3]
                        if waited < self.hop_wait_ms or entry[0] > moving or (
                                waited < PEND_WAIT_HOPS * self.hop_wait_ms
                                and self._pending_moves(entry, partition, now)):
                            break
                        self.timed_out += 1
                    heapq.heappop(queue)
                    heads.held -= 1
                    if entry[7]:
                        batch.writes[("device-held", entry[4])] = (partition, None)
                    entry[7] = None
                    self._apply(partition, entry[5], batch, states)
                if queue:
                    heads.head(device_id, queue[0])  # (taken by `due`: still waiting)
                else:
                    del queues[device_id]
                    heads.dropped(device_id)
        for partition, entry in self._fresh:  # still waiting: kept with this batch
            if entry[7] is False:
                entry[7] = True
                value = b"%d %s" % (entry[2], entry[6])
                batch.writes[("device-held", entry[4])] = (partition, value)
        self._fresh.clear()
        for key, (partition, state) in states.items():
            value = None if device.is_empty(state) else codec.encode_device(state)
            batch.writes[("devices", key)] = (partition, value)

    def _apply(self, partition: int, msg: AccountOnDevice, batch: Batch,
               states: dict[bytes, tuple[int, DeviceState]]) -> None:
        key = msg.device_id.encode()
        if key in states:
            state = states[key][1]
        else:
            raw = self.devices.get(key)
            state = DeviceState() if raw is None else codec.decode_device(raw)
        now = max(self.clocks.get(partition, 0), msg.ts)
        self.clocks[partition] = now
        state, matches = device.handle(state, msg, now_ms=now, policy=self.policy)
        states[key] = (partition, state)
        for match in matches:
            batch.outputs.append(Output(self.account_inbox, match.account_id.encode(),
                                        codec.encode_message(match)))

    def sweep(self, *, partitions: int, assigned: Iterable[int] | None = None,
              limit: int = 5000) -> Batch:
        """Forget accounts on devices past the device horizon; drop empty devices. Only the
        `assigned` partitions' devices (None: all): see `AccountStage.sweep`."""
        batch = Batch()
        owned = None if assigned is None else set(assigned)
        now = max(self.clocks.values(), default=0)
        if not now:
            return batch
        keys = list(self.devices.keys())
        start = self._cursor % max(len(keys), 1)
        for key in keys[start:start + limit]:
            raw = self.devices.get(key)
            partition = partition_of(key, partitions)
            if raw is None or (owned is not None and partition not in owned):
                continue
            state = codec.decode_device(raw)
            kept = device.expire(state, now_ms=now, policy=self.policy)
            if kept is not state:
                value = None if device.is_empty(kept) else codec.encode_device(kept)
                batch.writes[("devices", key)] = (partition, value)
        self._cursor = start + limit if start + limit < len(keys) else 0
        return batch
