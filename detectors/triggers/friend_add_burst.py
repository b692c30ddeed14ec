"""`friend_add_burst`: many distinct friends added in a short time.

Fires when ≥ `short_count` distinct friends are added within `short_window_ms`
or ≥ `long_count` within `long_window_ms` (SPEC trigger table).
"""

from __future__ import annotations

from detectors.config import Policy
from detectors.events import FriendAdded
from detectors.messages import Signal
from detectors.triggers._evidence import window_evidence
from detectors.windows import EMPTY, Entry, Window, add, densest_covering, prune, stream_time

name = "friend_add_burst"
consumes = FriendAdded
policy_keys = ("short_count", "short_window_ms", "long_count", "long_window_ms", "scopes")
initial: Window = EMPTY


def scopes(policy: Policy) -> tuple[str, ...]:
    return policy.friend_add_burst.scopes


def step(
    state: Window, event: FriendAdded, *, now_ms: int, policy: Policy
) -> tuple[Window, tuple[Signal, ...]]:
    p = policy.friend_add_burst
    state = add(
        state, Entry(event.ts, event.friend_id, event.event_id),
        horizon_ms=max(p.short_window_ms, p.long_window_ms),
        keep=max(p.short_count, p.long_count), now_ms=stream_time(state, event.ts),
    )
    if len(state) < p.short_count and len(state) < p.long_count:
        return state, ()  # no window holds more than every entry (most adds: a normal account)
    for threshold, window_ms in ((p.short_count, p.short_window_ms), (p.long_count, p.long_window_ms)):
        if len(state) < threshold:
            continue
        count, end = densest_covering(state, event.ts, window_ms)
        if count >= threshold:
            evidence = window_evidence(state, end, window_ms, threshold)
            return state, (Signal(name, event.ts, event.event_id, p.scopes, evidence),)
    return state, ()


def expire(state: Window, *, now_ms: int, policy: Policy) -> Window:
    p = policy.friend_add_burst
    return prune(state, horizon_ms=max(p.short_window_ms, p.long_window_ms), now_ms=now_ms)
