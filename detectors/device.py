"""The device stage: which accounts used a device, and their restriction status.

Keyed by `device_id`. It receives `AccountOnDevice` from the account stage
(a use, or a status change of an account that used the device) and answers
every use with `DeviceChecked` (the event's account-stage signals plus those
of the device triggers, `tainted_device` and `ban_evasion`, which only ever
look at *other* accounts on the device), and evaded accounts with
`DeviceMatched`.
"""

from __future__ import annotations

from dataclasses import dataclass

from detectors.config import Policy
from detectors.messages import AccountOnDevice, DeviceChecked, DeviceMatched
from detectors.triggers.registry import DEVICE_TRIGGERS
from detectors.values import constructor, fast_init


@fast_init
@dataclass(frozen=True, slots=True)
class DeviceAccount:
    account_id: str
    last_used_at: int
    restricted: bool
    level: int
    scopes: tuple[str, ...]
    tainted_at: int | None
    seq: int  # the account's decision count the status fields reflect


@fast_init
@dataclass(frozen=True, slots=True)
class DeviceState:
    accounts: tuple[DeviceAccount, ...] = ()  # oldest use first, capped


NOT_USED = -1  # last_used_at of an account whose status came before its first use

# DeviceAccount(...) and DeviceState(...) with every field, for the per-use hot path.
device_account = constructor(DeviceAccount)
device_state = constructor(DeviceState)


def handle(
    state: DeviceState, msg: AccountOnDevice, *, now_ms: int, policy: Policy
) -> tuple[DeviceState, tuple[DeviceChecked | DeviceMatched, ...]]:
    """Record the use or status change; answer a use with every signal of its event."""
    new_state, others = record(state, msg.account_id, msg.ts, msg.used, msg.restricted, msg.level,
                               msg.scopes, msg.tainted_at, policy=policy, seq=msg.seq)
    if not msg.used:
        return new_state, ()  # a status change (ignored if the device forgot the account)
    signals = msg.pending
    out: tuple[DeviceMatched, ...] = ()
    if others:  # device triggers only ever look at other accounts on the device
        for trigger in DEVICE_TRIGGERS:
            fired, notices = trigger.step(others, msg, now_ms=now_ms, policy=policy)
            signals += fired
            out += notices
    checked = DeviceChecked(f"{msg.msg_id}>checked", msg.ts, msg.account_id, msg.device_id,
                            msg.event_id, signals)
    return new_state, (checked, *out)


def record(state: DeviceState, account_id: str, ts: int, used: bool, restricted: bool, level: int,
           scopes: tuple[str, ...], tainted_at: int | None, *,
           policy: Policy, seq: int = 0) -> tuple[DeviceState, tuple[DeviceAccount, ...]]:
    """The state after an account's use (`used`) or status change, and the *other* accounts
    that used the device.

    Accounts stay ordered by (last use, account_id), capped. The newest status (by the
    account's decision count `seq`) wins, whatever order uses and status changes come in. A
    restriction or taint of an account with no use of the device yet is kept as `NOT_USED`,
    apart from the accounts on it: live, the use it precedes in event time can still be on
    its way, with the status from before (streams/stages.py pipelines uses).
    """
    accounts = state.accounts
    if len(accounts) == 1 and accounts[0].account_id == account_id:
        previous: DeviceAccount | None = accounts[0]  # the account's own device (most uses)
        others: tuple[DeviceAccount, ...] = ()
    else:
        others = tuple(a for a in accounts if a.account_id != account_id)
        previous = next((a for a in accounts if a.account_id == account_id), None)
    if previous is None:
        if not used and not restricted and tainted_at is None:
            return state, _used(others)
        last_used = ts if used else NOT_USED
    else:
        last_used = max(ts, previous.last_used_at) if used else previous.last_used_at
        if seq < previous.seq:
            restricted, level, scopes, tainted_at, seq = (
                previous.restricted, previous.level, previous.scopes, previous.tainted_at,
                previous.seq)
    me = device_account(account_id, last_used, restricted, level, scopes, tainted_at, seq)
    if others:
        kept = sorted((*others, me), key=_use_order)[-policy.state.max_accounts_per_device:]
        return device_state(tuple(kept)), _used(others)
    return device_state((me,)), others


def _used(accounts: tuple[DeviceAccount, ...]) -> tuple[DeviceAccount, ...]:
    """The accounts that used the device (device triggers look at no others)."""
    if accounts and accounts[0].last_used_at == NOT_USED:  # (sorted by last use: first)
        return tuple(a for a in accounts if a.last_used_at != NOT_USED)
    return accounts


def _use_order(a: DeviceAccount) -> tuple[int, str]:
    return a.last_used_at, a.account_id


def expire(state: DeviceState, *, now_ms: int, policy: Policy) -> DeviceState:
    """Forget accounts whose last use is past every device horizon."""
    cutoff = now_ms - policy.tainted_device.horizon_ms
    for a in state.accounts:
        if a.last_used_at <= cutoff and not a.restricted:
            kept = tuple(a for a in state.accounts if a.last_used_at > cutoff or a.restricted)
            return DeviceState(kept)
    return state


def is_empty(state: DeviceState) -> bool:
    return not state.accounts
