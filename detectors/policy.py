"""The restriction lifecycle of one account: decide, then evolve (SPEC "Restriction lifecycle").

`decide_*` functions look at a `Lifecycle` and one input (trigger signals, an
operator command, the clock reaching `lift_at`, a reporter strike) and return
the decisions to append; `evolve` folds one decision into the state. Nothing
here reads a clock: time is the event's `ts` or the caller's `now_ms`.

Transitions (state → input → decision):

| state      | input                                   | decision                          |
|------------|-----------------------------------------|-----------------------------------|
| clear      | signal that fires                       | restricted (level, lift_at)       |
| restricted | signal; scopes grow or lift_at +≥ step  | extended                          |
| restricted | signal; smaller move                    | — (absorbed; last signal noted)   |
| restricted | clock ≥ lift_at                         | lifted auto_quiet (at = lift_at)  |
| clear      | appeal_filed                            | appeal_rejected not_restricted    |
| restricted | appeal_filed, first, allowed            | appeal_received                   |
| restricted | appeal_filed, again                     | appeal_rejected duplicate         |
| indefinite | appeal_filed < cooldown after signal    | appeal_rejected cooldown          |
| pending    | appeal_decided granted / denied         | lifted appeal_granted / appeal_denied |
| restricted | mark_false_positive                     | lifted false_positive             |
| any        | restrict                                | restricted / extended (manual)    |
| restricted | lift                                    | lifted manual                     |
| any        | reporter strike                         | reporter_penalized [+ report ban] |

Overturned restrictions (appeal_granted, false_positive) do not count toward
later levels. Commands that cannot apply return `Rejected`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from detectors.config import Policy
from detectors.decisions import Decision
from detectors.events import ModerationCommanded, Rejected
from detectors.messages import Signal, evidence_of
from detectors.values import fast_init

OVERTURNING = ("appeal_granted", "false_positive")
REPORT_BAN_TRIGGER = "reporter_penalty"


@fast_init
@dataclass(frozen=True, slots=True)
class Restriction:
    started_at: int
    level: int
    scopes: tuple[str, ...]
    triggers: tuple[str, ...]
    lift_at: int | None
    last_signal_at: int
    appeal: str = "none"  # none | pending | decided
    upheld: tuple[tuple[str, str], ...] = ()  # (reporter_id, report event_id)


@fast_init
@dataclass(frozen=True, slots=True)
class Lifecycle:
    seq: int = 0
    restriction: Restriction | None = None
    past_starts: tuple[int, ...] = ()  # earlier restrictions that were not overturned
    tainted_at: int | None = None  # start of a spam-ish report_flood restriction


def level_for(state: Lifecycle, *, now_ms: int, policy: Policy) -> int:
    horizon = now_ms - policy.lifecycle.level_horizon_ms
    return 1 + sum(1 for start in state.past_starts if start > horizon)


def _lift_at(level: int, signal_at: int, policy: Policy) -> int | None:
    quiet = policy.quiet_ms(level)
    return None if quiet is None else signal_at + quiet


class _Builder:
    """Numbers decisions consecutively and stamps the policy version."""

    def __init__(self, state: Lifecycle, account_id: str, policy: Policy) -> None:
        self.seq = state.seq
        self.account_id = account_id
        self.version = policy.version
        self.out: list[Decision] = []

    def add(self, type_: str, at: int, *, scopes: Sequence[str] = (), triggers: Sequence[str] = (),
            level: int = 0, lift_at: int | None = None, reason: str | None = None,
            actor: str | None = None, evidence: dict[str, Any] | None = None,
            appeal_allowed_at: int | None = None, taints: bool = False) -> None:
        self.seq += 1
        self.out.append(Decision(
            self.account_id, self.seq, type_, at, tuple(sorted(scopes)), tuple(sorted(triggers)),
            level, lift_at, reason, actor, evidence or {}, self.version, appeal_allowed_at, taints,
        ))


def decide_signals(state: Lifecycle, signals: Sequence[Signal], *, account_id: str,
                   policy: Policy) -> tuple[Decision, ...]:
    """Signals from one event become at most one decision listing every trigger."""
    if not signals:
        return ()
    at = max(s.ts for s in signals)
    firing = [s for s in signals if s.fires]
    build = _Builder(state, account_id, policy)
    taints = any(s.taints for s in firing)
    r = state.restriction
    if r is None:
        if firing:
            level = level_for(state, now_ms=at, policy=policy)
            build.add("restricted", at, scopes=_union(firing), triggers=_names(firing), level=level,
                      lift_at=_lift_at(level, at, policy), evidence=_evidence(firing),
                      taints=taints)
        return tuple(build.out)
    scopes = tuple(sorted(set(r.scopes).union(_union(firing))))
    lift_at = r.lift_at
    if lift_at is not None:
        lift_at = max(lift_at, _lift_at(r.level, at, policy) or lift_at)
    grew = scopes != r.scopes
    moved = r.lift_at is not None and lift_at is not None \
        and lift_at - r.lift_at >= policy.lifecycle.extend_step_ms
    if grew or moved:
        build.add("extended", at, scopes=scopes, triggers=_names(signals), level=r.level,
                  lift_at=lift_at, evidence=_evidence(signals), taints=taints)
    return tuple(build.out)


def note_signals(state: Lifecycle, signals: Sequence[Signal]) -> tuple[Lifecycle, tuple[tuple[str, str], ...]]:
    """Record what every signal does to a restriction, even when absorbed.

    Returns the state and the reports that newly became upheld.
    """
    r = state.restriction
    if r is None or not signals:
        return state, ()
    fresh: tuple[tuple[str, str], ...] = ()
    if any(s.upheld for s in signals):
        known = set(r.upheld)
        fresh = tuple(dict.fromkeys(ref for s in signals for ref in s.upheld if ref not in known))
    last = max(r.last_signal_at, *(s.ts for s in signals))
    if last == r.last_signal_at and not fresh:
        return state, ()
    restriction = Restriction(r.started_at, r.level, r.scopes, r.triggers, r.lift_at, last, r.appeal,
                              r.upheld + fresh)
    return Lifecycle(state.seq, restriction, state.past_starts, state.tainted_at), fresh


def decide_lift_due(state: Lifecycle, *, account_id: str, now_ms: int,
                    policy: Policy) -> tuple[Decision, ...]:
    r = state.restriction
    if r is None or r.lift_at is None or r.lift_at > now_ms:
        return ()
    build = _Builder(state, account_id, policy)
    build.add("lifted", r.lift_at, level=r.level, reason="auto_quiet", evidence={
        "auto_quiet": {"restricted_at": r.started_at, "last_signal_at": r.last_signal_at,
                       "quiet_ms": policy.quiet_ms(r.level)},
    })
    return tuple(build.out)


def decide_command(state: Lifecycle, cmd: ModerationCommanded, *,
                   policy: Policy) -> tuple[Decision, ...] | Rejected:
    build = _Builder(state, cmd.account_id, policy)
    r = state.restriction
    actor, at = cmd.actor, cmd.ts
    note = {"note": cmd.note} if cmd.note else {}
    if cmd.action == "appeal_filed":
        if r is None:
            build.add("appeal_rejected", at, reason="not_restricted", actor=actor)
        elif r.appeal != "none":
            _same(build, "appeal_rejected", r, at, reason="duplicate", actor=actor)
        elif r.lift_at is None and at < r.last_signal_at + policy.lifecycle.appeal_cooldown_ms:
            _same(build, "appeal_rejected", r, at, reason="cooldown", actor=actor,
                  appeal_allowed_at=r.last_signal_at + policy.lifecycle.appeal_cooldown_ms)
        else:
            _same(build, "appeal_received", r, at, actor=actor)
        return tuple(build.out)
    if cmd.action == "restrict":
        return _manual_restrict(state, cmd, build, policy)
    if r is None:
        return Rejected("command_not_applicable", f"{cmd.action}: account is not restricted")
    if cmd.action == "appeal_decided":
        if r.appeal != "pending":
            return Rejected("command_not_applicable", "appeal_decided: no appeal is pending")
        if cmd.granted:
            build.add("lifted", at, level=r.level, reason="appeal_granted", actor=actor,
                      evidence={"appeal": {"granted": True, **note}})
        else:
            _same(build, "appeal_denied", r, at, actor=actor,
                  evidence={"appeal": {"granted": False, **note}})
    elif cmd.action == "mark_false_positive":
        build.add("lifted", at, level=r.level, reason="false_positive", actor=actor,
                  evidence={"false_positive": {"restricted_at": r.started_at, **note}})
    else:  # lift
        build.add("lifted", at, level=r.level, reason="manual", actor=actor,
                  evidence={"manual": {"restricted_at": r.started_at, **note}})
    return tuple(build.out)


def _manual_restrict(state: Lifecycle, cmd: ModerationCommanded, build: _Builder,
                     policy: Policy) -> tuple[Decision, ...]:
    at, scopes = cmd.ts, cmd.scopes or ()
    until = None if cmd.duration_ms is None else at + cmd.duration_ms
    evidence = {"manual": {"duration_ms": cmd.duration_ms, **({"note": cmd.note} if cmd.note else {})}}
    r = state.restriction
    if r is None:
        build.add("restricted", at, scopes=scopes, level=level_for(state, now_ms=at, policy=policy),
                  lift_at=until, reason="manual", actor=cmd.actor, evidence=evidence)
        return tuple(build.out)
    merged = tuple(sorted(set(r.scopes).union(scopes)))
    lift_at = None if until is None or r.lift_at is None else max(r.lift_at, until)
    if merged != r.scopes or lift_at != r.lift_at:
        build.add("extended", at, scopes=merged, level=r.level, lift_at=lift_at, reason="manual",
                  actor=cmd.actor, evidence=evidence)
    return tuple(build.out)


def decide_strike(state: Lifecycle, *, account_id: str, at: int, strike: int,
                  evidence: dict[str, Any], policy: Policy) -> tuple[Decision, ...]:
    """A reporter strike: always `reporter_penalized`; at the ban strike, scope `report`."""
    build = _Builder(state, account_id, policy)
    r = state.restriction
    current = r.scopes if r else ()
    build.add("reporter_penalized", at, scopes=current, triggers=(REPORT_BAN_TRIGGER,),
              level=r.level if r else 0, lift_at=r.lift_at if r else None,
              evidence={REPORT_BAN_TRIGGER: evidence})
    if strike == policy.reporters.restrict_at_strike:
        ban = {REPORT_BAN_TRIGGER: {**evidence, "scope": "report", "indefinite": True}}
        if r is None:
            build.add("restricted", at, scopes=("report",), triggers=(REPORT_BAN_TRIGGER,),
                      level=level_for(state, now_ms=at, policy=policy), evidence=ban)
        else:
            build.add("extended", at, scopes=(*set(r.scopes) | {"report"},),
                      triggers=(REPORT_BAN_TRIGGER,), level=r.level, evidence=ban)
    return tuple(build.out)


def evolve(state: Lifecycle, d: Decision) -> Lifecycle:
    """Fold one decision into the lifecycle state."""
    r = state.restriction
    match d.type:
        case "restricted":
            new = Restriction(d.at, d.level, d.scopes, d.triggers, d.lift_at, d.at)
            tainted = d.at if d.taints else state.tainted_at
            return replace(state, seq=d.seq, restriction=new, tainted_at=tainted)
        case "extended":
            assert r is not None, "extended without a restriction"
            triggers = tuple(sorted(set(r.triggers).union(d.triggers)))
            new = replace(r, scopes=d.scopes, triggers=triggers, lift_at=d.lift_at,
                          last_signal_at=max(r.last_signal_at, d.at))
            tainted = state.tainted_at if state.tainted_at is not None or not d.taints else d.at
            return replace(state, seq=d.seq, restriction=new, tainted_at=tainted)
        case "lifted":
            assert r is not None, "lifted without a restriction"
            if d.reason in OVERTURNING:
                from_this = state.tainted_at is not None and state.tainted_at >= r.started_at
                return replace(state, seq=d.seq, restriction=None,
                               tainted_at=None if from_this else state.tainted_at)
            return replace(state, seq=d.seq, restriction=None,
                           past_starts=(*state.past_starts, r.started_at))
        case "appeal_received":
            assert r is not None, "appeal_received without a restriction"
            return replace(state, seq=d.seq, restriction=replace(r, appeal="pending"))
        case "appeal_denied":
            assert r is not None, "appeal_denied without a restriction"
            return replace(state, seq=d.seq, restriction=replace(r, appeal="decided"))
        case "appeal_rejected" | "reporter_penalized":
            return replace(state, seq=d.seq)
        case _:
            raise TypeError(f"unknown decision type {d.type!r}")


def expire(state: Lifecycle, *, now_ms: int, policy: Policy) -> Lifecycle:
    """Forget earlier restrictions once they no longer count toward levels."""
    if not state.past_starts:
        return state
    horizon = now_ms - policy.lifecycle.level_horizon_ms
    kept = tuple(s for s in state.past_starts if s > horizon)
    return state if len(kept) == len(state.past_starts) else replace(state, past_starts=kept)


def _same(build: _Builder, type_: str, r: Restriction, at: int, **kw: Any) -> None:
    """A decision that leaves the restriction as it is."""
    build.add(type_, at, scopes=r.scopes, level=r.level, lift_at=r.lift_at, **kw)


def _union(signals: Sequence[Signal]) -> tuple[str, ...]:
    return tuple(sorted({scope for s in signals for scope in s.scopes}))


def _names(signals: Sequence[Signal]) -> tuple[str, ...]:
    return tuple(sorted({s.trigger for s in signals}))


def _evidence(signals: Sequence[Signal]) -> dict[str, Any]:
    return {s.trigger: evidence_of(s) for s in sorted(signals, key=lambda s: s.trigger)}
