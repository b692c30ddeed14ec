"""The account stage: everything keyed by `account_id`.

One `AccountState` per account holds the account's trigger windows, its
restriction lifecycle, its reporter record (a reporter is an account) and the
devices it was seen on. `handle` takes one input or internal message and
returns the new state, the decisions to append, and the messages for other
keys (detectors/messages.py) — the only way state crosses a key boundary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from detectors import policy as lifecycle
from detectors import reporters
from detectors.config import Policy
from detectors.decisions import Decision
from detectors.events import (
    DeviceSignalled,
    FriendAdded,
    MessageReported,
    ModerationCommanded,
    Rejected,
    RoomCreated,
)
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
)
from detectors.policy import OVERTURNING, Lifecycle
from detectors.reporters import ReporterRecord
from detectors.triggers.registry import ACCOUNT_TRIGGERS, BY_EVENT_TYPE
from detectors.values import constructor, fast_init


@fast_init
@dataclass(frozen=True, slots=True)
class AccountState:
    lifecycle: Lifecycle = Lifecycle()
    windows: dict[str, Any] = field(default_factory=dict)  # trigger name -> state; copy on write
    reporter: ReporterRecord = ReporterRecord()
    devices: tuple[tuple[str, int], ...] = ()  # (device_id, last announced use), newest last


@fast_init
@dataclass(frozen=True, slots=True)
class Outcome:
    state: AccountState
    decisions: tuple[Decision, ...] = ()
    outbox: tuple[Message, ...] = ()
    rejected: Rejected | None = None


EMPTY = AccountState()
account_state = constructor(AccountState)  # AccountState(...) with every field, on hot paths
# What `run_triggers` steps, per event type: (window name, initial state, step), bound once.
_STEPS = {etype: tuple((t.name, t.initial, t.step) for t in triggers)
          for etype, triggers in BY_EVENT_TYPE.items()}
_STATELESS_STEPS = {etype: tuple(t.step for t in triggers)
                    for etype, triggers in BY_EVENT_TYPE.items()
                    if all(t.initial is None for t in triggers)}


def handle(state: AccountState, msg: object, *, now_ms: int, policy: Policy) -> Outcome:
    """Apply one message addressed to this account."""
    match msg:
        case FriendAdded() | RoomCreated() | DeviceSignalled():
            state, signals = run_triggers(state, msg, now_ms=now_ms, policy=policy)
            if msg.device_id is None:
                return apply_signals(state, msg.account_id, signals, policy)
            # Decided when the device stage answers, with its triggers' signals too.
            return _announce_device(state, msg, signals, policy)
        case ReportWeighed():
            state, signals = run_triggers(state, msg, now_ms=now_ms, policy=policy)
            return apply_signals(state, msg.account_id, signals, policy)
        case DeviceChecked():
            return apply_signals(state, msg.account_id, msg.signals, policy)
        case MessageReported():
            return Outcome(state, outbox=(ReportFiled(
                f"{msg.event_id}>filed", msg.ts, msg.event_id, msg.reporter_id, msg.reported_id,
                msg.reason, msg.room_id),))
        case ReportFiled():
            return Outcome(state, outbox=(_weigh(state, msg),))
        case ReportsJudged():
            return _judge(state, msg, policy)
        case DeviceMatched():
            return apply_signals(state, msg.account_id, (_device_signal(msg),), policy)
        case ModerationCommanded():
            result = lifecycle.decide_command(state.lifecycle, msg, policy=policy)
            if isinstance(result, Rejected):
                return Outcome(state, rejected=result)
            return _commit(state, msg.account_id, result, (), policy)
        case LiftDue():
            decisions = lifecycle.decide_lift_due(
                state.lifecycle, account_id=msg.account_id, now_ms=msg.ts, policy=policy)
            return _commit(state, msg.account_id, decisions, (), policy)
        case _:
            raise TypeError(f"account stage cannot handle {type(msg).__name__}")


def run_triggers(state: AccountState, event: Any, *, now_ms: int,
                 policy: Policy) -> tuple[AccountState, tuple[Signal, ...]]:
    """Step every account trigger that consumes `event`; the new state and their signals."""
    windows = state.windows
    signals: tuple[Signal, ...] = ()
    for name, initial, step in _STEPS.get(type(event), ()):
        before = windows.get(name, initial)
        after, fired = step(before, event, now_ms=now_ms, policy=policy)
        if fired:
            signals += fired
        if after is not before:
            if after == initial:
                windows = {k: v for k, v in windows.items() if k != name}
            else:
                windows = {**windows, name: after}
    if windows is not state.windows:
        state = account_state(state.lifecycle, windows, state.reporter, state.devices)
    return state, signals


def stateless_signals(event: Any, *, now_ms: int, policy: Policy) -> tuple[Signal, ...] | None:
    """`run_triggers(state, event)[1]` for any state, when every trigger consuming the event
    keeps no state (`initial is None`, and a step hands back None); else None."""
    steps = _STATELESS_STEPS.get(type(event))
    if steps is None:
        return None
    signals: tuple[Signal, ...] = ()
    for step in steps:
        after, fired = step(None, event, now_ms=now_ms, policy=policy)
        if after is not None:
            raise TypeError(f"{step.__module__} keeps state but declares initial = None")
        if fired:
            signals += fired
    return signals


def apply_signals(state: AccountState, account_id: str, signals: tuple[Signal, ...],
                  policy: Policy) -> Outcome:
    """Decide on every signal of one event at once, and note them on the restriction."""
    if not signals:
        return Outcome(state)  # nothing to decide or note: the common device-use answer
    decisions = lifecycle.decide_signals(state.lifecycle, signals, account_id=account_id,
                                         policy=policy)
    return _commit(state, account_id, decisions, signals, policy)


def absorb_signals(state: AccountState, account_id: str, signals: tuple[Signal, ...],
                   policy: Policy) -> AccountState | None:
    """`apply_signals(...).state` when its outcome is that state alone (no decision, nothing
    to send): a restricted account's signals that are absorbed (SPEC "Restriction
    lifecycle"), noted on the restriction. Else None."""
    life = state.lifecycle
    if life.restriction is None or lifecycle.decide_signals(life, signals, account_id=account_id,
                                                            policy=policy):
        return None
    noted, fresh = lifecycle.note_signals(life, signals)
    if fresh:
        return None  # newly upheld reports are judged: messages to send
    if noted is life:
        return state
    return account_state(noted, state.windows, state.reporter, state.devices)


def _commit(state: AccountState, account_id: str, decisions: Iterable[Decision],
            signals: tuple[Signal, ...], policy: Policy) -> Outcome:
    """Fold decisions in, then derive the feedback other keys need."""
    decisions = tuple(decisions)
    if not decisions and not signals:
        return Outcome(state)
    before = state.lifecycle
    life = before
    outbox: list[Message] = []
    for d in decisions:
        if d.type == "lifted" and d.reason in OVERTURNING and life.restriction is not None:
            outbox.extend(_judged(d, life.restriction.upheld, upheld=False))
            # The evidence was judged innocent: it must not restrict the account again.
            state = replace(state, windows={})
        life = lifecycle.evolve(life, d)
    life, fresh = lifecycle.note_signals(life, signals)
    if fresh:
        at = max(s.ts for s in signals)
        outbox.extend(_judged_refs(account_id, f"{signals[0].event_id}>upheld", at, fresh, upheld=True))
    if life is not before:
        state = account_state(life, state.windows, state.reporter, state.devices)
    if any(d.type in ("restricted", "extended", "lifted") for d in decisions):
        outbox.extend(_status_to_devices(state, account_id, decisions[-1], decisions[-1].at))
    return Outcome(state, decisions, tuple(outbox))


def _judged(d: Decision, refs: tuple[tuple[str, str], ...], *, upheld: bool) -> list[Message]:
    return _judged_refs(d.account_id, f"{d.decision_id}>overturned", d.at, refs, upheld=upheld)


def _judged_refs(account_id: str, msg_prefix: str, at: int, refs: Iterable[tuple[str, str]],
                 *, upheld: bool) -> list[Message]:
    by_reporter: dict[str, list[str]] = {}
    for reporter_id, report_id in refs:
        by_reporter.setdefault(reporter_id, []).append(report_id)
    return [
        ReportsJudged(f"{msg_prefix}>{reporter_id}", at, reporter_id, account_id,
                      tuple(report_ids), upheld)
        for reporter_id, report_ids in by_reporter.items()
    ]


def status(state: AccountState) -> tuple[bool, int, tuple[str, ...], int | None]:
    """(restricted, level, scopes, tainted_at): what the device stage records of an account."""
    r = state.lifecycle.restriction
    if r is None:
        return False, 0, (), state.lifecycle.tainted_at
    return True, r.level, r.scopes, state.lifecycle.tainted_at


def _status_to_devices(state: AccountState, account_id: str, d: Decision,
                       at: int) -> list[Message]:
    restricted, level, scopes, tainted_at = status(state)
    return [
        AccountOnDevice(f"{d.decision_id}>status>{device_id}", at, device_id, account_id, False,
                        restricted, level, scopes, tainted_at, d.decision_id, (),
                        state.lifecycle.seq)
        for device_id, _ in state.devices
    ]


def _announce_device(state: AccountState, event: FriendAdded | RoomCreated | DeviceSignalled,
                     signals: tuple[Signal, ...], policy: Policy) -> Outcome:
    """Every use of a device goes to the device stage, with the event's pending signals."""
    state = note_device_use(state, event, policy)
    return Outcome(state, outbox=(device_use(state, event, signals),))


def note_device_use(state: AccountState, event: FriendAdded | RoomCreated | DeviceSignalled,
                    policy: Policy) -> AccountState:
    """Move the event's device to the end of the account's devices, with its latest use."""
    device_id = event.device_id
    assert device_id is not None
    devices, cap = state.devices, policy.state.max_devices_per_account
    if devices and devices[-1][0] == device_id and len(devices) <= cap:
        # The account's latest device again (most uses): only its time can move.
        if devices[-1][1] >= event.ts:
            return state
        kept = (*devices[:-1], (device_id, event.ts))
    else:
        last = next((t for d, t in devices if d == device_id), None)
        others = tuple((d, t) for d, t in devices if d != device_id)
        kept = (*others, (device_id, max(event.ts, last or event.ts)))[-cap:]
    return account_state(state.lifecycle, state.windows, state.reporter, kept)


def device_use(state: AccountState, event: FriendAdded | RoomCreated | DeviceSignalled,
               signals: tuple[Signal, ...]) -> AccountOnDevice:
    """The use the device stage answers, carrying the event's account-stage signals."""
    restricted, level, scopes, tainted_at = status(state)
    return AccountOnDevice(f"{event.event_id}>used", event.ts, event.device_id,  # type: ignore[arg-type]
                           event.account_id, True, restricted, level, scopes, tainted_at,
                           event.event_id, signals, state.lifecycle.seq)


def _weigh(state: AccountState, report: ReportFiled) -> ReportWeighed:
    record = state.reporter
    restricted = state.lifecycle.restriction is not None
    return ReportWeighed(
        f"{report.event_id}>weighed", report.ts, report.event_id, report.reporter_id,
        report.reported_id, report.reason, report.room_id,
        reporters.weight(record, restricted=restricted, now_ms=report.ts),
        reporters.credibility(record), tuple(d for d, _ in state.devices),
    )


def _judge(state: AccountState, msg: ReportsJudged, policy: Policy) -> Outcome:
    record, strikes = reporters.judge(state.reporter, len(msg.report_ids), upheld=msg.upheld,
                                      ts=msg.ts, policy=policy)
    state = replace(state, reporter=record)
    decisions: list[Decision] = []
    outbox: list[Message] = []
    for strike in strikes:
        evidence = {
            "strike": strike, "overturned_in_horizon": len(record.overturned_at),
            "credibility": round(reporters.credibility(record), 6),
            "muted_until": record.muted_until if strike >= policy.reporters.mute_from_strike else None,
            "reported_id": msg.reported_id, "sample_event_ids": list(msg.report_ids[:5]),
        }
        made = lifecycle.decide_strike(state.lifecycle, account_id=msg.account_id, at=msg.ts,
                                       strike=strike, evidence=evidence, policy=policy)
        out = _commit(state, msg.account_id, made, (), policy)
        state = out.state
        decisions.extend(out.decisions)
        outbox.extend(out.outbox)
    return Outcome(state, tuple(decisions), tuple(outbox))


def _device_signal(msg: DeviceMatched) -> Signal:
    """Evasion seen on the evaded account's device: restarts its quiet clock only."""
    evidence = {"device_id": msg.device_id, "evaded_by": msg.others[0],
                "sample_event_ids": [msg.event_id]}
    return Signal(msg.trigger, msg.ts, msg.event_id, (), evidence, fires=False)


def expire(state: AccountState, *, now_ms: int, policy: Policy,
           devices_expire: bool = True) -> AccountState:
    """Drop window entries and history that no longer matter at `now_ms`.

    Returns `state` itself when nothing expires: the engine sweeps every
    account, and most have nothing to drop. `devices_expire=False` (see
    `expire_all`) skips looking at device use times.
    """
    windows = state.windows
    if windows:
        windows = _expire_windows(windows, now_ms=now_ms, policy=policy)
    life = state.lifecycle
    if life.past_starts:
        life = lifecycle.expire(life, now_ms=now_ms, policy=policy)
    record = state.reporter
    if record.overturned_at or record.muted_until is not None:
        record = reporters.expire(record, now_ms=now_ms, policy=policy)
    devices = state.devices
    if devices_expire:
        device_horizon = now_ms - policy.tainted_device.horizon_ms
        for _, t in devices:
            if t <= device_horizon:
                devices = tuple((d, t) for d, t in devices if t > device_horizon)
                break
    if (windows is state.windows and life is state.lifecycle and record is state.reporter
            and devices is state.devices):
        return state
    return account_state(life, windows, record, devices)


def expire_all(states: dict[str, AccountState], *, now_ms: int, policy: Policy,
               devices_expire: bool = True) -> list[tuple[str, AccountState]]:
    """`expire` over many accounts: (key, state) of each that changes or can be dropped.

    Most accounts hold nothing but devices used within the horizon (the
    checks `expire` starts with), so only the others are expired in full.
    A caller that knows no device use is old enough yet passes
    `devices_expire=False` to skip looking.
    """
    device_horizon = now_ms - policy.tainted_device.horizon_ms
    changed = []
    for key, state in states.items():
        record = state.reporter
        if (state.windows or state.lifecycle.past_starts or record.overturned_at
                or record.muted_until is not None):
            kept = expire(state, now_ms=now_ms, policy=policy, devices_expire=devices_expire)
        else:
            kept = state
            for _, t in state.devices if devices_expire else ():
                if t <= device_horizon:
                    kept = expire(state, now_ms=now_ms, policy=policy)
                    break
        if kept is not state or (not kept.devices and is_droppable(kept)):
            changed.append((key, kept))
    return changed


def _expire_windows(windows: dict[str, Any], *, now_ms: int, policy: Policy) -> dict[str, Any]:
    """`windows` itself when no window changes (most sweeps), else the kept non-empty ones."""
    kept: dict[str, Any] = {}
    changed = False
    for name, window in windows.items():
        trigger = ACCOUNT_TRIGGERS[name]
        after = trigger.expire(window, now_ms=now_ms, policy=policy)
        if after is not window:
            changed = True
        if after == trigger.initial:
            changed = True
        else:
            kept[name] = after
    return kept if changed else windows


def is_droppable(state: AccountState) -> bool:
    """Nothing left that any horizon needs: the account can be forgotten.

    An account that ever had a decision is kept: its `seq` must keep growing."""
    return (not state.windows and not state.devices and state.lifecycle == Lifecycle()
            and state.reporter == ReporterRecord())
