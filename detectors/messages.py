"""Signals inside a stage, and the messages keyed stages send each other.

Warden's state is partitioned the way Kafka partitions it: by account (which
also plays the reporter role — a reporter *is* an account) and by device.
Everything that crosses a key boundary is one of the frozen messages below,
carried on an internal topic live and on an in-memory queue in replay
(detectors/engine.py). Each carries the `ts` of the input that caused it and a
deterministic `msg_id` derived from that input, so a redelivered message is
de-duplicated exactly like an input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from detectors.values import fast_init


@fast_init
@dataclass(frozen=True, slots=True)
class Deferred:
    """Evidence built only when a decision cites it (`evidence_of`): `build(*args)`.

    Most report_flood signals are absorbed by a restriction or fire nothing on
    a clear account, and their evidence dict was most of a report's cost.
    `build` must be pure, so the dict is the same whenever it is built.
    """

    build: Callable[..., dict[str, Any]]
    args: tuple[Any, ...]


@fast_init
@dataclass(frozen=True, slots=True)
class Signal:
    """A trigger's verdict on one event, handed to the restriction lifecycle.

    `fires` False means the event only restarts the quiet clock of an existing
    restriction (a report adding weight below the threshold, evasion seen by
    the evaded account); it never starts a restriction or adds scopes.
    """

    trigger: str
    ts: int
    event_id: str
    scopes: tuple[str, ...]
    evidence: dict[str, Any] | Deferred
    fires: bool = True
    upheld: tuple[tuple[str, str], ...] = ()  # (reporter_id, report event_id)
    taints: bool = False


def evidence_of(signal: Signal) -> dict[str, Any]:
    """The signal's evidence as a dict, built now if it was deferred."""
    evidence = signal.evidence
    return evidence.build(*evidence.args) if type(evidence) is Deferred else evidence  # type: ignore[return-value, union-attr]


# --- account (reporter role) <- account (reported role) -------------------

@fast_init
@dataclass(frozen=True, slots=True)
class ReportFiled:
    """A report, routed to its reporter's partition to be weighed."""

    msg_id: str
    ts: int
    event_id: str
    reporter_id: str
    reported_id: str
    reason: str
    room_id: str | None

    @property
    def account_id(self) -> str:
        return self.reporter_id


# --- account (reported role) <- account (reporter role) -------------------

@fast_init
@dataclass(frozen=True, slots=True)
class ReportWeighed:
    """A report with its weight fixed at arrival, and the reporter's devices."""

    msg_id: str
    ts: int
    event_id: str
    reporter_id: str
    reported_id: str
    reason: str
    room_id: str | None
    weight: float
    credibility: float
    reporter_devices: tuple[str, ...]

    @property
    def account_id(self) -> str:
        return self.reported_id


# --- account (reporter role) <- account (reported role): feedback ---------

@fast_init
@dataclass(frozen=True, slots=True)
class ReportsJudged:
    """Reports of one reporter became upheld (`upheld` True) or overturned."""

    msg_id: str
    ts: int
    account_id: str  # the reporter
    reported_id: str
    report_ids: tuple[str, ...]
    upheld: bool


# --- device <- account -----------------------------------------------------

@fast_init
@dataclass(frozen=True, slots=True)
class AccountOnDevice:
    """An account used a device (`used` True) or its restriction status changed.

    A use carries the account-stage signals of the same event (`pending`): the
    device stage answers every use with `DeviceChecked`, so triggers of both
    stages firing on one event give one decision (SPEC "Fine points").
    """

    msg_id: str
    ts: int
    device_id: str
    account_id: str
    used: bool
    restricted: bool
    level: int
    scopes: tuple[str, ...]
    tainted_at: int | None
    event_id: str
    pending: tuple[Signal, ...] = ()
    # the account's decision count this status reflects: live, a use can be sent while an older
    # input still awaits the reply that restricts the account (streams/stages.py pipelines
    # them), and the device stage keeps the newest status, not the last one to arrive
    seq: int = 0


@fast_init
@dataclass(frozen=True, slots=True)
class DeviceChecked:
    """The device stage's answer to a use: every signal of the event, to decide on once."""

    msg_id: str
    ts: int
    account_id: str
    device_id: str
    event_id: str
    signals: tuple[Signal, ...]


# --- account <- device -----------------------------------------------------

@fast_init
@dataclass(frozen=True, slots=True)
class DeviceMatched:
    """An evaded account's device was used by another account (`ban_evasion`).

    Only the evaded (already restricted) account's quiet clock restarts.
    """

    msg_id: str
    ts: int
    account_id: str
    trigger: str
    device_id: str
    others: tuple[str, ...]
    scopes: tuple[str, ...]
    event_id: str
    evaded: bool = False


@fast_init
@dataclass(frozen=True, slots=True)
class LiftDue:
    """The processing clock reached the account's `lift_at`."""

    msg_id: str
    ts: int
    account_id: str


Message = (ReportFiled | ReportWeighed | ReportsJudged | AccountOnDevice | DeviceChecked
           | DeviceMatched | LiftDue)
