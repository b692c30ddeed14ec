"""`emulator`: the account signed in from a PC emulator (SPEC trigger table)."""

from __future__ import annotations

from detectors.config import Policy
from detectors.events import DeviceSignalled
from detectors.messages import Signal

name = "emulator"
consumes = DeviceSignalled
policy_keys = ("scopes",)
initial = None


def scopes(policy: Policy) -> tuple[str, ...]:
    return policy.emulator.scopes


def step(
    state: None, event: DeviceSignalled, *, now_ms: int, policy: Policy
) -> tuple[None, tuple[Signal, ...]]:
    if event.emulator is not True:
        return state, ()
    evidence = {"device_id": event.device_id, "emulator": True, "sample_event_ids": [event.event_id]}
    return state, (Signal(name, event.ts, event.event_id, policy.emulator.scopes, evidence),)


def expire(state: None, *, now_ms: int, policy: Policy) -> None:
    return state
