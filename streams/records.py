"""Shapes the stage runners share: consumed records, outputs, batches, and the per-account
record of the account stage (state + applied ids + inputs parked behind cross-key replies)."""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka.partitioner import murmur2

from detectors import account, codec
from detectors.account import AccountState
from detectors.decisions import Decision
from detectors.events import (
    DeviceSignalled,
    FriendAdded,
    MessageReported,
    RoomCreated,
    decode,
)
from detectors.messages import LiftDue
from streams.topics import TopicNames


# Record and Output are plain carriers made several times per event: not frozen, as a frozen
# dataclass's __init__ sets each field through object.__setattr__ (3x the cost)
@dataclass(slots=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass(slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


@dataclass
class Batch:
    outputs: list[Output] = field(default_factory=list)
    # (table name, key) -> (partition, value or None to delete); last write wins
    writes: dict[tuple[str, bytes], tuple[int, bytes | None]] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)


# the sort key of a batch's (ts, arrival, record, item): a C itemgetter, not a Python call
by_time = operator.itemgetter(0, 1)


@functools.lru_cache(maxsize=16_384)
def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives `key` (murmur2, as Java and aiokafka).

    Cached: aiokafka's murmur2 is pure Python, and the stages route every internal message
    by key (3% of the worker's time, bench/perf.py's profile); active keys repeat."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def compact(value: bytes) -> bytes:
    """A copy of exactly `value`'s size, for values kept for good (the tables).

    orjson's output holds the 4 KiB block it was written into however short it is (3.13:
    about 4,090 bytes traced per 111-byte account record), so every table value cost
    4 KiB: 8.9 KB per idle account traced in-process where its state needs 0.5 KB
    (bench/perf.py's idle-memory phase: 10,188 B of RSS per idle account before, 3,783
    after)."""
    return bytes(memoryview(value))


def encode_tick(ts: int) -> bytes:
    return orjson.dumps(["tick", ts])



SEAL_AT = 128  # dedupe ids per sealed chunk
# the sealed chunks' JSON an account keeps at most, whatever `dedupe_ids_kept` says: its record
# must fit in one Kafka record (1 MB; an id is up to 128 characters)
SEALED_BYTES_KEPT = 512 * 1024


@dataclass
class AccountRecord:
    """Everything the account stage keeps for one account, in ONE changelog value.

    State, the ids it has applied (dedupe) and the inputs parked behind its
    cross-key requests change together, so a crash leaves an account wholly
    before or wholly after a batch: redelivery is then skipped or repeated
    identically, never half-applied.

    The record is re-written after every batch that touches the account, and a hot account
    holds every id of the dedupe horizon (7 days): encoded as one dict, 10,000 ids cost
    0.8 ms per batch (bench/hot_account.py), and at about 35,000 the record no longer fit
    in a Kafka record: the changelog write failed and so did the worker, again at each
    restart. So once `SEAL_AT` ids are unsealed they are sealed: encoded once, as a chunk of
    JSON written as it is from then on; and past the policy's `dedupe_ids_kept` (or
    `SEALED_BYTES_KEPT`) the oldest chunk is forgotten. The value is [state, ids not
    sealed, pending or null], plus [[newest time, chunk], ...] once there are chunks (a
    record from before the chunks has the first three only).
    """

    state: AccountState
    seen: dict[str, int]
    pending: Pending
    sealed: list[tuple[int, bytes]] = field(default_factory=list)  # (newest time in it, JSON)
    unsealed: dict[str, int] | None = None  # the ids of `seen` in no chunk (None: no chunks)

    def see(self, msg_id: str, ts: int) -> None:
        """Note an applied id (`ts`: when first seen, or seen again past the horizon)."""
        if self.unsealed is not None:
            if msg_id in self.seen:  # again, past the horizon (rare): the chunks are made
                self.sealed, self.unsealed = [], None  # afresh at the next write
            else:
                self.unsealed[msg_id] = ts
        self.seen[msg_id] = ts

    def forget_seen_before(self, cutoff: int) -> bool:
        """Forget the ids first seen before `cutoff`; False when there were none. Those of a
        chunk go when all of it is older, so no chunk is encoded again: a lookup compares
        each id's own time with the horizon anyway (`_Work.first_sighting`)."""
        tail = self.seen if self.unsealed is None else self.unsealed
        kept_tail = {k: t for k, t in tail.items() if t >= cutoff}
        old = [chunk for newest, chunk in self.sealed if newest < cutoff]
        if not old and len(kept_tail) == len(tail):
            return False
        seen = {k: t for k, t in self.seen.items() if k not in tail}
        for chunk in old:
            for msg_id in orjson.loads(chunk):
                del seen[msg_id]
        self.sealed = [c for c in self.sealed if c[0] >= cutoff]
        seen.update(kept_tail)
        self.seen = seen
        self.unsealed = kept_tail if self.sealed else None
        return True

    def encode(self, ids_kept: int | None = None) -> bytes | None:
        """The changelog value (None: nothing worth keeping). `ids_kept`: the policy's
        `dedupe_ids_kept` (None: only `SEALED_BYTES_KEPT` bounds the chunks)."""
        if not self.seen and not self.pending and account.is_droppable(self.state):
            return None
        pending = self.pending.to_obj() if self.pending else None
        state = orjson.Fragment(codec.encode_account(self.state))
        tail = self.seen if self.unsealed is None else self.unsealed
        if len(tail) >= SEAL_AT:
            tail = self._seal(tail, ids_kept)
        if not self.sealed:
            return orjson.dumps([state, self.seen, pending])
        chunks = [[newest, orjson.Fragment(chunk)] for newest, chunk in self.sealed]
        return orjson.dumps([state, tail, pending, chunks])

    def _seal(self, tail: dict[str, int], ids_kept: int | None) -> dict[str, int]:
        """Seal the unsealed ids in whole chunks of `SEAL_AT`, forget the oldest chunks past
        `ids_kept` ids or `SEALED_BYTES_KEPT`; the ids left unsealed."""
        items = list(tail.items())
        whole = len(items) - len(items) % SEAL_AT
        sealed = self.sealed
        for at in range(0, whole, SEAL_AT):
            chunk = dict(items[at:at + SEAL_AT])
            sealed.append((max(chunk.values()), compact(orjson.dumps(chunk))))
        self.unsealed = dict(items[whole:])
        # (the newest `ids_kept`, rounded up to whole chunks)
        most = len(sealed) if ids_kept is None else max(1, -(-ids_kept // SEAL_AT))
        size = sum(len(chunk) for _, chunk in sealed)
        while len(sealed) > most or (size > SEALED_BYTES_KEPT and len(sealed) > 1):
            _, chunk = sealed.pop(0)
            size -= len(chunk)
            for msg_id in orjson.loads(chunk):
                del self.seen[msg_id]
        return self.unsealed


def load_account(raw: bytes | None) -> AccountRecord:
    if raw is None:
        return AccountRecord(account.EMPTY, {}, Pending())
    state, seen, pending, *sealed = orjson.loads(raw)
    record = AccountRecord(codec.account_from_obj(state), seen,
                           Pending.from_obj(pending) if pending else Pending())
    if sealed:
        ids: dict[str, int] = {}
        for newest, chunk in sealed[0]:
            ids.update(chunk)
            # (the same bytes: orjson keeps a decoded object's key order)
            record.sealed.append((newest, orjson.dumps(chunk)))
        ids.update(seen)  # (no id is in two chunks, nor in one and unsealed: `see`)
        record.seen, record.unsealed = ids, seen
    return record


@dataclass
class Pending:
    """An account's inputs not applied yet: awaiting cross-key replies, or parked behind them.
    (Inputs held for the other input topics live in memory, streams/alignment.py; `held` is
    what workers before the commit floor kept here, restored and released after a start.)"""

    # [event_id, reply or None, ts] in send order, with a fourth item USE for a device use (a
    # due lift waiting for the device stage has no id, `gated`); see `status_settled`
    flight: list[list[Any]] = field(default_factory=list)
    parked: list[list[Any]] = field(default_factory=list)  # inputs behind them, arrival order
    # alignment entries [ts, arrival, wall_in, topic, offset, key, value, stamp] (older workers)
    held: list[list[Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.flight or self.parked or self.held)

    def oldest_ts(self) -> int | None:
        """Event time of the oldest item still waiting (in flight or parked)."""
        times = [slot[2] for slot in self.flight] + [_parked_ts(p) for p in self.parked]
        return min(times) if times else None

    def to_obj(self) -> list[Any]:
        flight = [[e, None if r is None else codec.encode_message(r).decode(), *rest]
                  for e, r, *rest in self.flight]
        return [flight, self.parked, self.held] if self.held else [flight, self.parked]

    @classmethod
    def from_obj(cls, obj: list[Any]) -> Pending:
        flight, parked, *held = obj
        return cls([[e, None if r is None else codec.decode_message(r.encode()), *rest]
                    for e, r, *rest in flight], parked, held[0] if held else [])


def _parked_ts(parked: list[Any]) -> int:
    if parked[0] == "lift":
        return int(parked[2])
    return _input_ts(parked[5])


@functools.lru_cache(maxsize=4_096)
def _input_ts(value: str) -> int:
    """A parked input's `ts`. `oldest_ts` asks for every parked input of an account whenever
    a lift might be due, and a restricted burst account parks many: parsed once, not on
    every ask (the value's hash is kept by the string)."""
    return int(orjson.loads(value)["ts"])


USE = "u"  # marks a flight slot whose input is a device use (not a report)


def needs_hop(item: object) -> bool:
    """Inputs whose decision waits for another key: reports (weighing) and device uses."""
    if isinstance(item, MessageReported):
        return True
    return isinstance(item, FriendAdded | RoomCreated | DeviceSignalled) and item.device_id is not None


def park(rec: Record | None, item: object) -> list[Any]:
    if isinstance(item, LiftDue):
        return ["lift", item.msg_id, item.ts, item.account_id]
    assert rec is not None and rec.value is not None
    return ["input", rec.topic, rec.partition, rec.offset, rec.key.decode() if rec.key else None,
            rec.value.decode(), rec.timestamp_ms]


def unpark(names: TopicNames, parked: list[Any]) -> tuple[Record | None, object]:
    if parked[0] == "lift":
        return None, LiftDue(parked[1], parked[2], parked[3])
    _, topic, partition, offset, key, value, ts = parked
    rec = Record(topic, partition, offset, key.encode() if key else None, value.encode(), ts)
    return rec, decode(names.canonical(topic), rec.value or b"")


