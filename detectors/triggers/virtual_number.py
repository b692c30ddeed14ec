"""`virtual_number`: a phone number the carrier cannot vouch for.

Fires on `virtual_number: true`, or on a `phone_country` other than the
policy's `home_country` with `carrier_verified: false` (SPEC trigger table).
An absent `carrier_verified` is not evidence either way.
"""

from __future__ import annotations

from detectors.config import Policy
from detectors.events import DeviceSignalled
from detectors.messages import Signal

name = "virtual_number"
consumes = DeviceSignalled
policy_keys = ("scopes",)
initial = None


def scopes(policy: Policy) -> tuple[str, ...]:
    return policy.virtual_number.scopes


def step(
    state: None, event: DeviceSignalled, *, now_ms: int, policy: Policy
) -> tuple[None, tuple[Signal, ...]]:
    overseas_unverified = (
        event.phone_country is not None
        and event.phone_country != policy.home_country
        and event.carrier_verified is False
    )
    if event.virtual_number is not True and not overseas_unverified:
        return state, ()
    evidence = {
        "device_id": event.device_id,
        "virtual_number": event.virtual_number,
        "phone_country": event.phone_country,
        "home_country": policy.home_country,
        "carrier_verified": event.carrier_verified,
        "sample_event_ids": [event.event_id],
    }
    return state, (Signal(name, event.ts, event.event_id, policy.virtual_number.scopes, evidence),)


def expire(state: None, *, now_ms: int, policy: Policy) -> None:
    return state
