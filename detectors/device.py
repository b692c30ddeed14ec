"""The device stage: which accounts used a device, and their restriction status.

Keyed by `device_id`. It receives `AccountOnDevice` from the account stage
(a use, or a status change of an account that used the device) and answers
every use with `DeviceChecked` (the event's account-stage signals plus those
of the device triggers, `tainted_device` and `ban_evasion`, which only ever
look at *other* accounts on the device), and evaded accounts with
`DeviceMatched`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from detectors.config import Policy
from detectors.messages import AccountOnDevice, DeviceChecked, DeviceMatched
from detectors.triggers.registry import DEVICE_TRIGGERS


@dataclass(frozen=True, slots=True)
class DeviceAccount:
    account_id: str
    last_used_at: int
    restricted: bool
    level: int
    scopes: tuple[str, ...]
    tainted_at: int | None


@dataclass(frozen=True, slots=True)
class DeviceState:
    accounts: tuple[DeviceAccount, ...] = ()  # oldest use first, capped


def handle(
    state: DeviceState, msg: AccountOnDevice, *, now_ms: int, policy: Policy
) -> tuple[DeviceState, tuple[DeviceChecked | DeviceMatched, ...]]:
    """Record the use or status change; answer a use with every signal of its event."""
    others = tuple(a for a in state.accounts if a.account_id != msg.account_id)
    previous = next((a for a in state.accounts if a.account_id == msg.account_id), None)
    if previous is None and not msg.used:
        return state, ()  # status of an account this device has forgotten
    last_used = msg.ts if msg.used else previous.last_used_at  # type: ignore[union-attr]
    if previous is not None:
        last_used = max(last_used, previous.last_used_at)
    me = DeviceAccount(msg.account_id, last_used, msg.restricted, msg.level, msg.scopes,
                       msg.tainted_at)
    kept = sorted((*others, me), key=lambda a: (a.last_used_at, a.account_id))
    kept = kept[-policy.state.max_accounts_per_device:]
    new_state = replace(state, accounts=tuple(kept))
    if not msg.used:
        return new_state, ()
    signals = list(msg.pending)
    out: list[DeviceChecked | DeviceMatched] = []
    for trigger in DEVICE_TRIGGERS:
        fired, notices = trigger.step(others, msg, now_ms=now_ms, policy=policy)
        signals.extend(fired)
        out.extend(notices)
    checked = DeviceChecked(f"{msg.msg_id}>checked", msg.ts, msg.account_id, msg.device_id,
                            msg.event_id, tuple(signals))
    return new_state, (checked, *out)


def expire(state: DeviceState, *, now_ms: int, policy: Policy) -> DeviceState:
    """Forget accounts whose last use is past every device horizon."""
    cutoff = now_ms - policy.tainted_device.horizon_ms
    for a in state.accounts:
        if a.last_used_at <= cutoff and not a.restricted:
            return DeviceState(tuple(a for a in state.accounts if a.last_used_at > cutoff or a.restricted))
    return state


def is_empty(state: DeviceState) -> bool:
    return not state.accounts
