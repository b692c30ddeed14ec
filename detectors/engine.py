"""The sequential, in-memory runner of every keyed stage: `warden replay`'s core.

It owns what a Kafka deployment spreads over partitions: the account and
device state maps, input de-duplication, the processing clock and the
queue of internal messages. Feedback an input causes is drained before the
next input (SPEC "Time and determinism"), so a replay is deterministic.
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

SWEEP_EVERY = 1 << 16
_DEVICE_USES = (FriendAdded, RoomCreated, DeviceSignalled)
_NO_DEVICE = DeviceState()
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
        self.accounts: dict[str, AccountState] = {}
        self.devices: dict[str, DeviceState] = {}
        self.dedupe = Deduper(policy.state.dedupe_horizon_ms)
        self.clock: int | None = None
        self._lifts: list[tuple[int, str]] = []
        self._queue: deque[Message | Event] = deque()
        self._handled = 0
        self._earliest_ms: int | None = None  # lowest input ts: no stored use time is older

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
        clock, lifts = self.clock, self._lifts
        if self._earliest_ms is None or event.ts < self._earliest_ms:
            self._earliest_ms = event.ts
        if clock is None or event.ts > clock:
            if lifts and lifts[0][0] <= event.ts:
                out.extend(self.advance(event.ts))
            clock = self.clock = event.ts
        if not self.dedupe.first_sighting(event.event_id, now_ms=clock):
            return DUPLICATE
        rejected = self._input(event, clock, out)
        # A late event may have produced a restriction that is already due.
        if lifts and lifts[0][0] <= clock:
            out.extend(self.advance(clock))
        self._handled += 1
        if self._handled % SWEEP_EVERY == 0:
            self.sweep()
        return rejected

    def _input(self, event: Event, now: int, out: list[Decision]) -> Rejected | None:
        """Handle an input and everything it causes.

        Fast path: a device use on a device no other account used. The device
        stage would answer its `AccountOnDevice` with a `DeviceChecked` carrying
        just the account-stage signals (device triggers only look at other
        accounts), first in an empty queue; so both states are moved here
        directly and the signals decided at once, as the round trip would.
        """
        if type(event) in _DEVICE_USES and event.device_id is not None:  # type: ignore[union-attr]
            policy, key, device_id = self.policy, event.account_id, event.device_id  # type: ignore[union-attr]
            state, signals = account.run_triggers(self.accounts.get(key, account.EMPTY), event,
                                                  now_ms=now, policy=policy)
            state = account.note_device_use(state, event, policy)  # type: ignore[arg-type]
            self.accounts[key] = state
            restricted, level, scopes, tainted_at = account.status(state)
            dstate, others = device.record(
                self.devices.get(device_id, _NO_DEVICE), key, event.ts, True, restricted, level,
                scopes, tainted_at, policy=policy)
            if others:
                self._queue.append(account.device_use(state, event, signals))  # type: ignore[arg-type]
                return self._drain(out)
            self.devices[device_id] = dstate
            if not signals:
                return None
            self._settle(key, account.apply_signals(state, key, signals, policy), out)
        else:
            self._queue.append(event)
        return self._drain(out)

    def advance(self, until_ms: int) -> list[Decision]:
        """Move the clock to `until_ms`, firing due lifts in (lift_at, account_id) order."""
        out: list[Decision] = []
        while self._lifts and self._lifts[0][0] <= until_ms:
            lift_at, account_id = heapq.heappop(self._lifts)
            state = self.accounts.get(account_id)
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
        now, queue, accounts = self.clock, self._queue, self.accounts
        while queue:
            msg = queue.popleft()
            if type(msg) is AccountOnDevice:
                self._handle_device(msg, now)
                continue
            key = msg.account_id
            outcome = account.handle(accounts.get(key, account.EMPTY), msg, now_ms=now,
                                     policy=self.policy)
            rejected = self._settle(key, outcome, out) or rejected
        return rejected

    def _settle(self, key: str, outcome: account.Outcome, out: list[Decision]) -> Rejected | None:
        """Store an account's outcome: decisions out, its next lift scheduled, messages queued."""
        self.accounts[key] = outcome.state
        if outcome.decisions:
            out.extend(outcome.decisions)
            r = outcome.state.lifecycle.restriction
            if r is not None and r.lift_at is not None:
                heapq.heappush(self._lifts, (r.lift_at, key))
        if outcome.outbox:
            self._queue.extend(outcome.outbox)
        return outcome.rejected

    def _handle_device(self, msg: AccountOnDevice, now: int) -> None:
        state = self.devices.get(msg.device_id, _NO_DEVICE)
        state, matches = device.handle(state, msg, now_ms=now, policy=self.policy)
        if device.is_empty(state):  # a status change for an account the device forgot
            self.devices.pop(msg.device_id, None)
        else:
            self.devices[msg.device_id] = state
        self._queue.extend(matches)

    def sweep(self) -> None:
        """Expire state past every horizon and forget keys with nothing left."""
        if self.clock is None:
            return
        now, policy = self.clock, self.policy
        accounts = self.accounts
        changed: list[tuple[str, AccountState]] = []
        for key, state in accounts.items():
            kept = account.expire(state, now_ms=now, policy=policy)
            if kept is not state or account.is_droppable(kept):
                changed.append((key, kept))
        for key, kept in changed:
            if account.is_droppable(kept):
                del accounts[key]
            else:
                accounts[key] = kept
        earliest = self._earliest_ms
        if earliest is not None and now - policy.tainted_device.horizon_ms >= earliest:
            self._sweep_devices(now)  # else no use is old enough yet: device state cannot expire
        self.dedupe.expire(now_ms=now)

    def _sweep_devices(self, now: int) -> None:
        devices, policy = self.devices, self.policy
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
