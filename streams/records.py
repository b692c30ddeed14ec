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


class SeenIds(dict[str, int]):
    """The ids an account applied within the dedupe horizon: id -> event time first seen.

    A dict for lookups, kept for the changelog as chunks: ids are added to `open`, and every
    `SEAL_AT` of them are sealed, encoded to JSON once and written as that fragment from
    then on. The record is re-written after every batch that touches its account, and a
    hot account holds every id of the last 7 days (the spec's horizon): written as one
    dict, 10,000 ids cost 0.8 ms of encoding per batch (bench/hot_account.py).
    """

    __slots__ = ("open", "sealed")

    def __init__(self, ids: dict[str, int] | None = None,
                 sealed: list[tuple[int, bytes]] | None = None) -> None:
        super().__init__()
        self.sealed: list[tuple[int, bytes]] = []  # (newest time in it, its JSON), oldest first
        for newest, chunk in sealed or ():
            super().update(orjson.loads(chunk))
            self.sealed.append((newest, chunk))
        self.open: dict[str, int] = dict(ids or {})
        super().update(self.open)  # (after the chunks: an id seen again has its newer time)
        if len(self.open) >= SEAL_AT:
            self._seal()

    def __setitem__(self, msg_id: str, ts: int) -> None:
        super().__setitem__(msg_id, ts)
        self.open[msg_id] = ts
        if len(self.open) >= SEAL_AT:
            self._seal()

    def _seal(self) -> None:
        self.sealed.append((max(self.open.values()), compact(orjson.dumps(self.open))))
        self.open = {}

    def without_older(self, cutoff: int) -> SeenIds | None:
        """A copy without the ids first seen before `cutoff` (None: there are none). Those of
        a sealed chunk go when all of it is older, so a chunk is never re-encoded; lookups
        compare each id's own time with the horizon anyway (`_Work.first_sighting`)."""
        sealed = [(newest, chunk) for newest, chunk in self.sealed if newest >= cutoff]
        open_ = {k: t for k, t in self.open.items() if t >= cutoff}
        if len(sealed) == len(self.sealed) and len(open_) == len(self.open):
            return None
        return SeenIds(open_, sealed)

    def to_obj(self) -> tuple[dict[str, int], list[list[Any]]]:
        """The open ids, and the sealed chunks as [newest, fragment]."""
        return self.open, [[newest, orjson.Fragment(chunk)] for newest, chunk in self.sealed]

    @classmethod
    def from_obj(cls, ids: dict[str, int], sealed: list[list[Any]] | None) -> SeenIds:
        """From `to_obj`'s two parts as decoded (the chunks' JSON made again, byte for byte:
        orjson keeps the order of a decoded object's keys)."""
        if not sealed:
            return cls(ids)
        seen = cls()
        for newest, chunk in sealed:
            dict.update(seen, chunk)
            seen.sealed.append((newest, orjson.dumps(chunk)))
        seen.open = ids
        dict.update(seen, ids)
        return seen


@dataclass
class AccountRecord:
    """Everything the account stage keeps for one account, in ONE changelog value.

    State, the ids it has applied (dedupe) and the inputs parked behind its
    cross-key requests change together, so a crash leaves an account wholly
    before or wholly after a batch: redelivery is then skipped or repeated
    identically, never half-applied.

    Encoded as [state, open ids, pending or null] plus, once it has any, [sealed chunks]
    (`SeenIds`); a record from before the chunks has the first three only.
    """

    state: AccountState
    seen: SeenIds
    pending: Pending

    def __post_init__(self) -> None:
        if type(self.seen) is not SeenIds:
            self.seen = SeenIds(self.seen)

    def encode(self) -> bytes | None:
        if not self.seen and not self.pending and account.is_droppable(self.state):
            return None
        pending = self.pending.to_obj() if self.pending else None
        state = orjson.Fragment(codec.encode_account(self.state))
        open_, sealed = self.seen.to_obj()
        if sealed:
            return orjson.dumps([state, open_, pending, sealed])
        return orjson.dumps([state, open_, pending])


def load_account(raw: bytes | None) -> AccountRecord:
    if raw is None:
        return AccountRecord(account.EMPTY, SeenIds(), Pending())
    state, seen, pending, *sealed = orjson.loads(raw)
    return AccountRecord(codec.account_from_obj(state),
                         SeenIds.from_obj(seen, sealed[0] if sealed else None),
                         Pending.from_obj(pending) if pending else Pending())


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


