"""`report_flood`: the weighted report score against the account is too high.

Implements SPEC "Report weighting" on the reported account's side; the weight
itself was fixed on the reporter's side when the report arrived
(detectors/reporters.py). A report is *counted* unless: its weight is 0, its
reporter already has a counted report about this account within
`reporter_once_per_ms`, or its room already has `room_cap` counted reports
within `room_window_ms`. The score is the sum, over groups of reporters that
share a device, of the group's highest weight.
"""

from __future__ import annotations

from bisect import insort
from typing import Any, NamedTuple

from detectors.config import Policy
from detectors.messages import Deferred, ReportWeighed, Signal

name = "report_flood"
consumes = ReportWeighed
policy_keys = (
    "threshold", "window_ms", "reporter_once_per_ms", "room_cap", "room_window_ms",
    "taint_reasons", "scopes",
)
EPSILON = 1e-9
SAMPLE_SIZE = 10


class CountedReport(NamedTuple):
    ts: int
    reporter_id: str
    event_id: str
    weight: float
    reason: str
    room_id: str | None
    devices: tuple[str, ...]


State = tuple[CountedReport, ...]
initial: State = ()


def scopes(policy: Policy) -> tuple[str, ...]:
    return policy.report_flood.scopes


def step(
    state: State, report: ReportWeighed, *, now_ms: int, policy: Policy
) -> tuple[State, tuple[Signal, ...]]:
    p = policy.report_flood
    newest = max(report.ts, state[-1].ts) if state else report.ts
    state = expire(state, now_ms=newest, policy=policy)
    if report.weight <= 0 or not _is_counted(state, report, p.reporter_once_per_ms,
                                               p.room_cap, p.room_window_ms):
        return state, ()
    entry = CountedReport(
        report.ts, report.reporter_id, report.event_id, report.weight, report.reason,
        report.room_id, report.reporter_devices,
    )
    previous = state
    entries = list(state)
    insort(entries, entry)
    state = tuple(entries)
    members, score, representatives = _densest(state, report.ts, p.window_ms)
    # The evidence dict is built only if a decision cites it (most signals are absorbed).
    evidence = Deferred(_evidence, (members, representatives, score, p.threshold, p.window_ms,
                                    p.taint_reasons))
    if score + EPSILON >= p.threshold:
        upheld = tuple((r.reporter_id, r.event_id) for r in representatives)
        signal = Signal(name, report.ts, report.event_id, p.scopes, evidence, True, upheld,
                        _taints(_by_reason(representatives), score, p.taint_reasons))
        return state, (signal,)
    if entry in representatives \
            and score > _score(_window(previous, report.ts, p.window_ms))[0] + EPSILON:
        signal = Signal(name, report.ts, report.event_id, (), evidence, False,
                        ((entry.reporter_id, entry.event_id),), False)
        return state, (signal,)
    return state, ()


def expire(state: State, *, now_ms: int, policy: Policy) -> State:
    p = policy.report_flood
    horizon = max(p.window_ms, p.reporter_once_per_ms, p.room_window_ms)
    cutoff = now_ms - horizon
    if not state or state[0].ts > cutoff:
        return state
    return tuple(r for r in state if r.ts > cutoff)


def _is_counted(state: State, report: ReportWeighed, once_ms: int, room_cap: int,
                room_window_ms: int) -> bool:
    same_room = 0
    for r in state:
        if r.reporter_id == report.reporter_id and abs(r.ts - report.ts) < once_ms:
            return False
        if report.room_id is not None and r.room_id == report.room_id \
                and abs(r.ts - report.ts) < room_window_ms:
            same_room += 1
    return same_room < room_cap


def _densest(state: State, ts: int, window_ms: int) -> tuple[State, float, list[CountedReport]]:
    """The highest-scoring window of length `window_ms` containing `ts`.

    For an in-order report that is the window ending at it; a late report is
    also checked against the windows ending at each later report.
    """
    best_members = _window(state, ts, window_ms)
    best_score, best_reps = _score(best_members)
    for end in sorted({r.ts for r in state if ts < r.ts < ts + window_ms}):
        members = _window(state, end, window_ms)
        score, reps = _score(members)
        if score > best_score + EPSILON:
            best_members, best_score, best_reps = members, score, reps
    return best_members, best_score, best_reps


def _window(state: State, end_ms: int, window_ms: int) -> State:
    return tuple(r for r in state if end_ms - window_ms < r.ts <= end_ms)


def _score(members: State) -> tuple[float, list[CountedReport]]:
    """Sum of each device group's highest weight; the reports that carry it."""
    devices = [device for report in members for device in report.devices]
    if len(set(devices)) == len(devices):  # no device shared: every report is its own group
        return sum(r.weight for r in members), list(members)  # (what the loops below give)
    parent = list(range(len(members)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[str, int] = {}
    for i, report in enumerate(members):
        for device in report.devices:
            j = owner.setdefault(device, i)
            if j != i:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    best: dict[int, CountedReport] = {}
    for i, report in enumerate(members):
        root = find(i)
        held = best.get(root)
        if held is None or report.weight > held.weight:
            best[root] = report
    representatives = [best[root] for root in sorted(best)]
    return sum(r.weight for r in representatives), representatives


def _evidence(members: State, representatives: list[CountedReport], score: float,
              threshold: float, window_ms: int, taint_reasons: tuple[str, ...]) -> dict[str, Any]:
    by_reason = _by_reason(representatives)
    return {
        "score": round(score, 6),
        "threshold": threshold,
        "window_ms": window_ms,
        "count": len(members),
        "reporter_groups": len(representatives),
        "weighted_reasons": {k: round(v, 6) for k, v in sorted(by_reason.items())},
        "taints": _taints(by_reason, score, taint_reasons),
        "contributions": [
            {"reporter_id": r.reporter_id, "weight": round(r.weight, 6), "reason": r.reason,
             "event_id": r.event_id}
            for r in representatives[:SAMPLE_SIZE]
        ],
        "sample_event_ids": [r.event_id for r in members[:5]],
    }


def _by_reason(representatives: list[CountedReport]) -> dict[str, float]:
    by_reason: dict[str, float] = {}
    for r in representatives:
        by_reason[r.reason] = by_reason.get(r.reason, 0.0) + r.weight
    return by_reason


def _taints(by_reason: dict[str, float], score: float, taint_reasons: tuple[str, ...]) -> bool:
    """Mostly spam-ish weight: a restriction that taints the account's devices (SPEC)."""
    tainting = sum(w for reason, w in by_reason.items() if reason in taint_reasons)
    return tainting * 2 > score + EPSILON
