"""The sequential, in-memory runner of every keyed stage: `warden replay`'s core.

It owns what a Kafka deployment spreads over partitions: the account and
device state maps, input de-duplication, the processing clock and the
queue of internal messages. Feedback an input causes is drained before the
next input (SPEC "Time and determinism"), so a replay is deterministic.

Replay speed: a use of a device is most inputs, so it skips the message round
trip when the device is not shared (`_input`), and a use that only moves the
last-use times is written behind (`_uses`, which also notes whose use it is,
so that account's next quiet use of the device needs no re-check). Both give
exactly the states and decisions the stage-by-stage path gives
(tests/detectors/test_engine_fast_paths.py compares them);
`bench/replay_throughput.py` measures.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from detectors import account, device
from detectors.account import AccountState
from detectors.config import DEFAULT_POLICY, Policy
from detectors.decisions import Decision
from detectors.device import DeviceState
from detectors.events import DeviceSignalled, Event, FriendAdded, Rejected, RoomCreated
from detectors.messages import AccountOnDevice, LiftDue, Message

# The sweep visits every account, so it runs after SWEEP_EVERY inputs or SWEEP_PER_ACCOUNT
# inputs per tracked account, whichever is later: amortized, a bounded number of account
# visits per input however many accounts there are (state stays bounded: what can expire
# waits at most that many more inputs).
SWEEP_EVERY = 1 << 16
SWEEP_PER_ACCOUNT = 4
_DEVICE_USES = (FriendAdded, RoomCreated, DeviceSignalled)
_NO_DEVICE = DeviceState()
_EMPTY_ACCOUNT = account.EMPTY
run_triggers, stateless_signals = account.run_triggers, account.stateless_signals
absorb_signals = account.absorb_signals
DUPLICATE = Rejected("duplicate", "event_id already seen within the dedupe horizon")


@dataclass
class Deduper:
    """Ids seen within `horizon_ms` of the clock; the first sighting wins.

    `now_ms` never decreases (it is the engine clock) and a re-sighted id is
    moved to the end, so `seen` is ordered by time and expiry stops at the
    first id still inside the horizon instead of rebuilding the whole map.
    """

    horizon_ms: int
    seen: dict[str, int] = field(default_factory=dict)

    def first_sighting(self, msg_id: str, *, now_ms: int) -> bool:
        seen = self.seen
        first = seen.get(msg_id)
        if first is not None:
            if now_ms - first < self.horizon_ms:
                return False
            del seen[msg_id]
        seen[msg_id] = now_ms
        return True

    def expire(self, *, now_ms: int) -> None:
        cutoff = now_ms - self.horizon_ms
        stale = []
        for msg_id, first in self.seen.items():
            if first > cutoff:
                break
            stale.append(msg_id)
        for msg_id in stale:
            del self.seen[msg_id]


@dataclass(slots=True)
class Result:
    decisions: list[Decision] = field(default_factory=list)
    rejected: Rejected | None = None
    duplicate: bool = False


class Engine:
    """Feed events in log order; get decisions in emission order."""

    def __init__(self, policy: Policy = DEFAULT_POLICY) -> None:
        self.policy = policy
        self._accounts: dict[str, AccountState] = {}
        self._devices: dict[str, DeviceState] = {}
        # Write-behind of the one thing most device uses change (see `_input`): device id ->
        # (its only account, time of that account's newest use), not yet in either state. A
        # mutable map private to the engine, because rebuilding both frozen states on every
        # such use was a fifth of a replay. Folded in before anything else reads either state.
        self._uses: dict[str, tuple[str, int]] = {}
        self.dedupe = Deduper(policy.state.dedupe_horizon_ms)
        self._seen, self._dedupe_horizon_ms = self.dedupe.seen, policy.state.dedupe_horizon_ms
        self._max_devices = policy.state.max_devices_per_account
        self.clock: int | None = None
        self._lifts: list[tuple[int, str]] = []
        self._queue: deque[Message | Event] = deque()
        self._handled = 0
        self._next_sweep = SWEEP_EVERY
        self._earliest_ms: int | None = None  # lowest input ts: no stored use time is older

    @property
    def accounts(self) -> dict[str, AccountState]:
        """Account states by id (read-only use)."""
        self._fold_all_uses()
        return self._accounts

    @property
    def devices(self) -> dict[str, DeviceState]:
        """Device states by id (read-only use)."""
        self._fold_all_uses()
        return self._devices

    def process(self, event: Event) -> Result:
        """One accepted input: lifts the clock passes first, then the event and its feedback."""
        result = Result()
        status = self.feed(event, result.decisions)
        if status is DUPLICATE:
            result.duplicate = True
        else:
            result.rejected = status
        return result

    def feed(self, event: Event, out: list[Decision]) -> Rejected | None:
        """`process` for batch callers: decisions go to `out`; returns `DUPLICATE`, a
        rejection of the input, or None."""
        ts = event.ts
        if self._earliest_ms is None or ts < self._earliest_ms:
            self._earliest_ms = ts
        clock, lifts = self.clock, self._lifts
        if clock is None or ts > clock:
            if lifts and lifts[0][0] <= ts:
                out.extend(self.advance(ts))
            clock = self.clock = ts
        # Deduper.first_sighting, inlined, with one lookup in the (large) map for a new id.
        seen, event_id = self._seen, event.event_id
        size = len(seen)
        first = seen.setdefault(event_id, clock)
        if len(seen) == size:  # seen before
            if clock - first < self._dedupe_horizon_ms:
                return DUPLICATE
            del seen[event_id]
            seen[event_id] = clock
        rejected = self._input(event, clock, out)
        # A late event may have produced a restriction that is already due.
        if lifts and lifts[0][0] <= clock:
            out.extend(self.advance(clock))
        self._handled += 1
        if self._handled >= self._next_sweep:
            self.sweep()
            self._next_sweep = self._handled + max(SWEEP_EVERY,
                                                   SWEEP_PER_ACCOUNT * len(self._accounts))
        return rejected

    def _input(self, event: Event, now: int, out: list[Decision]) -> Rejected | None:
        """Handle an input and everything it causes.

        Fast paths for a device use (most inputs). If no account trigger fires,
        the device is the account's latest (within the cap, so
        `account.note_device_use` takes its first branch) and the account is
        the only one on it with its current status (so `device.record`
        re-records it alone), the use moves nothing but the two last-use
        times: noted in `_uses`. The same holds when a restricted account's
        signals are absorbed (`account.absorb_signals`: no decision, nothing
        to send; only the restriction's last signal moves, which no device
        records), as during a burst that goes on. Otherwise, on a device no other account used,
        the device stage would answer its `AccountOnDevice` with a
        `DeviceChecked` carrying just the account-stage signals (device triggers
        only look at other accounts), first in an empty queue; so both states
        are moved here and the signals decided at once, as the round trip would.
        """
        if type(event) in _DEVICE_USES and event.device_id is not None:  # type: ignore[union-attr]
            policy, key, device_id = self.policy, event.account_id, event.device_id  # type: ignore[union-attr]
            pending = self._uses.get(device_id)
            if pending is not None and pending[0] == key \
                    and stateless_signals(event, now_ms=now, policy=policy) == ():
                # A quiet use again (below), by an event whose triggers read no account
                # state (`stateless_signals` is () only then): the state is not needed.
                if pending[1] < event.ts:
                    self._uses[device_id] = (key, event.ts)
                return None
            before = self._accounts.get(key, _EMPTY_ACCOUNT)
            state, signals = run_triggers(before, event, now_ms=now, policy=policy)
            # (`pending` is as fetched above: run_triggers is pure.) Signals a restricted
            # account absorbs only note themselves on its lifecycle: still a quiet use.
            if not signals or state.lifecycle.restriction is not None:
                uses, ts = self._uses, event.ts  # type: ignore[union-attr]
                # A pending use of the device by this account means the checks held then, and
                # nothing they read has changed since (see `_fold_uses`): the same answer.
                if pending[0] == key if pending is not None \
                        else self._only_times_move(state, key, device_id):
                    quiet = absorb_signals(state, key, signals, policy) if signals else state
                    if quiet is not None:
                        if quiet is not before:
                            self._accounts[key] = quiet
                        if pending is None or pending[1] < ts:
                            uses[device_id] = (key, ts)
                        return None
            self._accounts[key] = state
            self._fold_account_uses(key)
            self._fold_uses(device_id)
            state = account.note_device_use(self._accounts[key], event, policy)  # type: ignore[arg-type]
            self._accounts[key] = state
            restricted, level, scopes, tainted_at = account.status(state)
            dstate, others = device.record(
                self._devices.get(device_id, _NO_DEVICE), key, event.ts, True, restricted, level,
                scopes, tainted_at, policy=policy, seq=state.lifecycle.seq)
            if others:
                self._queue.append(account.device_use(state, event, signals))  # type: ignore[arg-type]
                return self._drain(out)
            self._devices[device_id] = dstate
            if not signals:
                return None
            self._settle(key, account.apply_signals(state, key, signals, policy), out)
        else:
            self._queue.append(event)
        return self._drain(out)

    # --- write-behind of last-use times -------------------------------------------
    def _only_times_move(self, state: AccountState, key: str, device_id: str) -> bool:
        """Would this use only move the last-use times? (account.note_device_use's first
        branch, and device.record re-recording the sole account with the same status)"""
        devices = state.devices
        if not devices or devices[-1][0] != device_id or len(devices) > self._max_devices:
            return False
        dstate = self._devices.get(device_id)
        if dstate is None or len(dstate.accounts) != 1:
            return False
        a = dstate.accounts[0]
        return a.account_id == key and a.seq == state.lifecycle.seq \
            and (a.restricted, a.level, a.scopes, a.tainted_at) == account.status(state)

    def _fold_uses(self, device_id: str) -> None:
        """Write a device's pending last use into its state and its only account's.

        A pending use of a device belongs to its only account, whose latest
        device it is; neither state changed since but for windows, because
        everything else that reads or writes them folds first: `_input`,
        `_drain`, `_handle_device`, the sweep (when device uses can expire) and
        the `accounts` / `devices` views.
        """
        pending = self._uses.pop(device_id, None)
        if pending is None:
            return
        ts = pending[1]
        dstate = self._devices[device_id]
        a = dstate.accounts[0]
        if a.last_used_at < ts:
            self._devices[device_id] = device.device_state((device.device_account(
                a.account_id, ts, a.restricted, a.level, a.scopes, a.tainted_at, a.seq),))
        state = self._accounts[a.account_id]
        devices = state.devices
        if devices[-1][1] < ts:
            self._accounts[a.account_id] = account.account_state(
                state.lifecycle, state.windows, state.reporter, (*devices[:-1], (device_id, ts)))

    def _fold_account_uses(self, key: str) -> None:
        """A pending use of an account can only be on its latest device."""
        state = self._accounts.get(key)
        if state is not None and state.devices and self._uses:
            self._fold_uses(state.devices[-1][0])

    def _fold_all_uses(self) -> None:
        for device_id in list(self._uses):
            self._fold_uses(device_id)

    def advance(self, until_ms: int) -> list[Decision]:
        """Move the clock to `until_ms`, firing due lifts in (lift_at, account_id) order."""
        out: list[Decision] = []
        while self._lifts and self._lifts[0][0] <= until_ms:
            lift_at, account_id = heapq.heappop(self._lifts)
            state = self._accounts.get(account_id)  # (pending uses never touch the lifecycle)
            r = state.lifecycle.restriction if state else None
            if r is None or r.lift_at != lift_at:
                continue  # stale: the restriction moved or ended since
            self.clock = max(self.clock or lift_at, lift_at)
            self._queue.append(LiftDue(f"{account_id}:{state.lifecycle.seq}>lift", lift_at, account_id))  # type: ignore[union-attr]
            self._drain(out)
        self.clock = until_ms if self.clock is None else max(self.clock, until_ms)
        return out

    def _drain(self, out: list[Decision]) -> Rejected | None:
        rejected = None
        assert self.clock is not None
        now, queue, accounts = self.clock, self._queue, self._accounts
        while queue:
            msg = queue.popleft()
            if type(msg) is AccountOnDevice:
                self._handle_device(msg, now)
                continue
            key = msg.account_id
            self._fold_account_uses(key)
            outcome = account.handle(accounts.get(key, account.EMPTY), msg, now_ms=now,
                                     policy=self.policy)
            rejected = self._settle(key, outcome, out) or rejected
        return rejected

    def _settle(self, key: str, outcome: account.Outcome, out: list[Decision]) -> Rejected | None:
        """Store an account's outcome: decisions out, its next lift scheduled, messages queued."""
        self._accounts[key] = outcome.state
        if outcome.decisions:
            out.extend(outcome.decisions)
            r = outcome.state.lifecycle.restriction
            if r is not None and r.lift_at is not None:
                heapq.heappush(self._lifts, (r.lift_at, key))
        if outcome.outbox:
            self._queue.extend(outcome.outbox)
        return outcome.rejected

    def _handle_device(self, msg: AccountOnDevice, now: int) -> None:
        self._fold_uses(msg.device_id)
        state = self._devices.get(msg.device_id, _NO_DEVICE)
        state, matches = device.handle(state, msg, now_ms=now, policy=self.policy)
        if device.is_empty(state):  # a status change for an account the device forgot
            self._devices.pop(msg.device_id, None)
        else:
            self._devices[msg.device_id] = state
        self._queue.extend(matches)

    def sweep(self) -> None:
        """Expire state past every horizon and forget keys with nothing left."""
        if self.clock is None:
            return
        now, policy = self.clock, self.policy
        earliest = self._earliest_ms
        device_uses_expire = earliest is not None \
            and now - policy.tainted_device.horizon_ms >= earliest
        if device_uses_expire:
            self._fold_all_uses()  # else pending times cannot change what expires
        accounts = self._accounts
        # Stored use times are input times, so none is past the horizon before the earliest is.
        for key, kept in account.expire_all(accounts, now_ms=now, policy=policy,
                                            devices_expire=device_uses_expire):
            if account.is_droppable(kept):
                del accounts[key]
            else:
                accounts[key] = kept
        if device_uses_expire:
            self._sweep_devices(now)  # else no use is old enough yet: device state cannot expire
        self.dedupe.expire(now_ms=now)

    def _sweep_devices(self, now: int) -> None:
        devices, policy = self._devices, self.policy
        changed: list[tuple[str, DeviceState]] = []
        for key, state in devices.items():
            kept = device.expire(state, now_ms=now, policy=policy)
            if kept is not state or device.is_empty(kept):
                changed.append((key, kept))
        for key, kept in changed:
            if device.is_empty(kept):
                del devices[key]
            else:
                devices[key] = kept


def run(events: Iterable[Event], *, policy: Policy = DEFAULT_POLICY,
        until_ms: int | None = None) -> list[Decision]:
    """Replay `events` and return every decision (tests and back-testing)."""
    engine = Engine(policy)
    out: list[Decision] = []
    for event in events:
        out.extend(engine.process(event).decisions)
    if until_ms is not None:
        out.extend(engine.advance(until_ms))
    return out
