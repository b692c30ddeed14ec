"""`room_creation_burst`: many chat rooms created in a short time.

Fires when ≥ `open_count` open rooms are created within `open_window_ms`, or
≥ `any_count` rooms of any type within `any_window_ms` (SPEC trigger table).
"""

from __future__ import annotations

from detectors.config import Policy
from detectors.events import RoomCreated
from detectors.messages import Signal
from detectors.triggers._evidence import window_evidence
from detectors.windows import EMPTY, Entry, Window, add, densest_covering, prune, stream_time

name = "room_creation_burst"
consumes = RoomCreated
policy_keys = ("open_count", "open_window_ms", "any_count", "any_window_ms", "scopes")
State = tuple[Window, Window]  # (open rooms, rooms of any type)
initial: State = (EMPTY, EMPTY)


def scopes(policy: Policy) -> tuple[str, ...]:
    return policy.room_creation_burst.scopes


def step(
    state: State, event: RoomCreated, *, now_ms: int, policy: Policy
) -> tuple[State, tuple[Signal, ...]]:
    p = policy.room_creation_burst
    open_rooms, any_rooms = state
    entry = Entry(event.ts, event.room_id, event.event_id)
    if event.room_type == "open":
        open_rooms = add(open_rooms, entry, horizon_ms=p.open_window_ms, keep=p.open_count,
                         now_ms=stream_time(open_rooms, event.ts))
    any_rooms = add(any_rooms, entry, horizon_ms=p.any_window_ms, keep=p.any_count,
                    now_ms=stream_time(any_rooms, event.ts))
    state = (open_rooms, any_rooms)
    rules = ((open_rooms, p.open_count, p.open_window_ms, "open"), (any_rooms, p.any_count, p.any_window_ms, "any"))
    for window, threshold, window_ms, room_type in rules:
        if (room_type == "open" and event.room_type != "open") or len(window) < threshold:
            continue  # no window holds more than every entry (most rooms: a normal account)
        count, end = densest_covering(window, event.ts, window_ms)
        if count >= threshold:
            evidence = {"room_type": room_type, **window_evidence(window, end, window_ms, threshold)}
            return state, (Signal(name, event.ts, event.event_id, p.scopes, evidence),)
    return state, ()


def expire(state: State, *, now_ms: int, policy: Policy) -> State:
    p = policy.room_creation_burst
    open_rooms = prune(state[0], horizon_ms=p.open_window_ms, now_ms=now_ms)
    any_rooms = prune(state[1], horizon_ms=p.any_window_ms, now_ms=now_ms)
    if open_rooms is state[0] and any_rooms is state[1]:
        return state
    return (open_rooms, any_rooms)
