"""Compact JSON encodings of stage state and internal messages.

State lives in Faust tables (and their changelog topics) and messages on
internal topics, so both are encoded as positional JSON arrays rather than
objects: a tracked account's state stays small on the wire and in memory.
`decode_*(encode_*(x)) == x` for every value (tests/detectors/test_codec.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from detectors.account import AccountState
from detectors.device import DeviceAccount, DeviceState
from detectors.messages import (
    AccountOnDevice,
    DeviceChecked,
    DeviceMatched,
    LiftDue,
    Message,
    ReportFiled,
    ReportsJudged,
    ReportWeighed,
    Signal,
    evidence_of,
)
from detectors.policy import Lifecycle, Restriction
from detectors.reporters import ReporterRecord
from detectors.triggers.report_flood import CountedReport
from detectors.values import constructor
from detectors.windows import Entry

FORMAT = 1

MESSAGE_TAGS: dict[type, str] = {
    ReportFiled: "filed", ReportWeighed: "weighed", ReportsJudged: "judged",
    AccountOnDevice: "on_device", DeviceChecked: "checked", DeviceMatched: "matched",
    LiftDue: "lift_due",
}
_BY_TAG = {tag: cls for cls, tag in MESSAGE_TAGS.items()}


SIGNAL_FIELDS = frozenset({"pending", "signals"})
# fields that hold a scalar (never a list on the wire): passed through as decoded
_SCALAR = frozenset({"str", "int", "bool", "float", "str | None", "int | None", "bool | None"})


def _message_codec(cls: type, tag: str) -> tuple[Callable[[Any], bytes], Callable[[list[Any]], Any]]:
    """An encoder and a decoder for one message class, unrolled per field (about three
    messages per input event cross the stages; a generic loop over the fields, with a
    frozen dataclass's `__init__`, cost 7.7 us per decode)."""
    names = list(cls.__dataclass_fields__)  # type: ignore[attr-defined]
    out, back = [], []
    for i, name in enumerate(names, start=1):
        kind = cls.__dataclass_fields__[name].type  # type: ignore[attr-defined]
        if name in SIGNAL_FIELDS:
            out.append(f"_signals_out(m.{name})")
            back.append(f"_signals_in(v[{i}])")
        elif kind in _SCALAR:
            out.append(f"m.{name}")
            back.append(f"v[{i}]")
        else:
            out.append(f"m.{name}")
            back.append(f"_tuples(v[{i}])")
    namespace = {"_dumps": orjson.dumps, "_signals_out": _signals_out, "_signals_in": _signals_in,
                 "_tuples": _tuples, "_make": constructor(cls), "_slow": _decode_slowly,
                 "_tag": tag, "_count": len(names) + 1}
    exec(f"def encode(m):\n    return _dumps([_tag, {', '.join(out)}])\n"
         f"def decode(v):\n    if len(v) != _count:\n        return _slow(v)\n"
         f"    return _make({', '.join(back)})\n", namespace)
    return namespace["encode"], namespace["decode"]


def encode_message(msg: Message) -> bytes:
    return _ENCODERS[type(msg)](msg)


def decode_message(raw: bytes) -> Message:
    values = orjson.loads(raw)
    return _DECODERS[values[0]](values)  # type: ignore[no-any-return]


def _decode_slowly(values: list[Any]) -> Message:
    """A message with fields missing (from a worker before they were added): defaults."""
    tag, *rest = values
    cls = _BY_TAG[tag]
    signal_at = [f in SIGNAL_FIELDS for f in cls.__dataclass_fields__]  # type: ignore[attr-defined]
    return cls(*[_signals_in(v) if signals else _tuples(v)  # type: ignore[no-any-return]
                 for signals, v in zip(signal_at, rest, strict=False)])


def _signals_out(signals: tuple[Signal, ...]) -> list[list[Any]]:
    return [[s.trigger, s.ts, s.event_id, s.scopes, evidence_of(s), s.fires, s.upheld, s.taints]
            for s in signals]


def _signals_in(values: list[list[Any]]) -> tuple[Signal, ...]:
    return tuple(
        Signal(v[0], v[1], v[2], tuple(v[3]), v[4], v[5], tuple(tuple(r) for r in v[6]), v[7])
        for v in values
    )


def _tuples(value: Any) -> Any:
    if type(value) is list:
        return tuple(_tuples(v) for v in value)
    return value


_CODECS = {cls: _message_codec(cls, tag) for cls, tag in MESSAGE_TAGS.items()}
_ENCODERS = {cls: encoder for cls, (encoder, _) in _CODECS.items()}
_DECODERS = {MESSAGE_TAGS[cls]: decoder for cls, (_, decoder) in _CODECS.items()}


# --- account state ------------------------------------------------------------

def encode_account(state: AccountState) -> bytes:
    life = state.lifecycle
    r = life.restriction
    restriction = None if r is None else [
        r.started_at, r.level, r.scopes, r.triggers, r.lift_at, r.last_signal_at, r.appeal, r.upheld,
    ]
    rec = state.reporter
    return orjson.dumps([
        FORMAT,
        [life.seq, restriction, life.past_starts, life.tainted_at],
        state.windows,
        [rec.upheld, rec.overturned, rec.overturned_at, rec.strike, rec.muted_until],
        state.devices,
    ], default=_plain)


def _plain(value: Any) -> Any:
    """Window entries are NamedTuples, which orjson leaves to us."""
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def decode_account(raw: bytes) -> AccountState:
    return account_from_obj(orjson.loads(raw))


def account_from_obj(obj: list[Any]) -> AccountState:
    """`decode_account` of an already-parsed value (it can be embedded in a larger record)."""
    version, life, windows, rec, devices = obj
    if version != FORMAT:
        raise ValueError(f"account state format {version} is not {FORMAT}")
    seq, r, past, tainted = life
    restriction = None if r is None else Restriction(
        r[0], r[1], tuple(r[2]), tuple(r[3]), r[4], r[5], r[6], tuple(tuple(x) for x in r[7]))
    return AccountState(
        Lifecycle(seq, restriction, tuple(past), tainted),
        {name: _WINDOW_DECODERS[name](value) for name, value in windows.items()},
        ReporterRecord(rec[0], rec[1], tuple(rec[2]), rec[3], rec[4]),
        tuple((d, t) for d, t in devices),
    )


def _entries(value: list[list[Any]]) -> tuple[Entry, ...]:
    return tuple(Entry(*e) for e in value)


def _reports(value: list[list[Any]]) -> tuple[CountedReport, ...]:
    return tuple(CountedReport(r[0], r[1], r[2], r[3], r[4], r[5], tuple(r[6])) for r in value)


_WINDOW_DECODERS = {
    "friend_add_burst": _entries,
    "room_creation_burst": lambda v: (_entries(v[0]), _entries(v[1])),
    "report_flood": _reports,
}


# --- device state -------------------------------------------------------------

def encode_device(state: DeviceState) -> bytes:
    return orjson.dumps([
        [a.account_id, a.last_used_at, a.restricted, a.level, a.scopes, a.tainted_at, a.seq]
        for a in state.accounts
    ])


def decode_device(raw: bytes) -> DeviceState:
    return DeviceState(tuple(
        DeviceAccount(a[0], a[1], a[2], a[3], tuple(a[4]), a[5], a[6] if len(a) > 6 else 0)
        for a in orjson.loads(raw)
    ))
