"""`ban_evasion`: the account uses a device of an account restricted at level ≥ 2.

The evader gets the evaded account's scopes; the evaded account's quiet clock
restarts (SPEC trigger table, "Background"). Runs on the device stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from detectors.config import Policy
from detectors.messages import AccountOnDevice, DeviceMatched, Signal

if TYPE_CHECKING:
    from detectors.device import DeviceAccount

name = "ban_evasion"
consumes = AccountOnDevice
policy_keys = ("min_level",)


def scopes(policy: Policy) -> tuple[str, ...]:
    return ()  # the evaded account's scopes, known only at run time


def step(
    others: Sequence[DeviceAccount], use: AccountOnDevice, *, now_ms: int, policy: Policy
) -> tuple[tuple[Signal, ...], tuple[DeviceMatched, ...]]:
    evaded = [a for a in others if a.restricted and a.level >= policy.ban_evasion.min_level]
    if not evaded:
        return (), ()
    scopes_union = tuple(sorted({s for a in evaded for s in a.scopes}))
    evidence = {"device_id": use.device_id, "other_accounts": [a.account_id for a in evaded][:10],
                "evaded_levels": [a.level for a in evaded][:10], "sample_event_ids": [use.event_id]}
    notices = tuple(
        DeviceMatched(f"{use.msg_id}>{name}>{a.account_id}", use.ts, a.account_id, name,
                      use.device_id, (use.account_id,), (), use.event_id, evaded=True)
        for a in evaded
    )
    return (Signal(name, use.ts, use.event_id, scopes_union, evidence),), notices
