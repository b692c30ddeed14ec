"""`tainted_device`: the account uses a device a flooded spammer used.

Fires when another account that used the device within `horizon_ms` (180
days) carries a spam-ish `report_flood` restriction that was not overturned
(SPEC trigger table). Runs on the device stage (detectors/device.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from detectors.config import Policy
from detectors.messages import AccountOnDevice, DeviceMatched, Signal

if TYPE_CHECKING:
    from detectors.device import DeviceAccount

name = "tainted_device"
consumes = AccountOnDevice
policy_keys = ("horizon_ms", "scopes")


def scopes(policy: Policy) -> tuple[str, ...]:
    return policy.tainted_device.scopes


def step(
    others: Sequence[DeviceAccount], use: AccountOnDevice, *, now_ms: int, policy: Policy
) -> tuple[tuple[Signal, ...], tuple[DeviceMatched, ...]]:
    horizon = policy.tainted_device.horizon_ms
    tainters = [a.account_id for a in others
                if a.tainted_at is not None and use.ts - a.last_used_at < horizon]
    if not tainters:
        return (), ()
    evidence = {"device_id": use.device_id, "other_accounts": tainters[:10],
                "horizon_ms": horizon, "sample_event_ids": [use.event_id]}
    return (Signal(name, use.ts, use.event_id, policy.tainted_device.scopes, evidence),), ()
