"""Differential test: the engine's replay fast paths against the plain stage-by-stage path.

`Engine._input` skips the device round trip and writes quiet last-use times
behind (detectors/engine.py); `Reference` below routes every input through
the queue, `account.handle` and `device.handle` instead, and sweeps by
expiring every account and device in full. Seeded simulated
workloads, made harder with late events, duplicates, malformed lines and
frequent sweeps, must give the same decision bytes, rejections and final
states.
"""

from __future__ import annotations

import random

import pytest

from detectors import account, device
from detectors import engine as engine_module
from detectors import policy as policy_module
from detectors.config import DEFAULT_POLICY
from detectors.decisions import Decision
from detectors.engine import DUPLICATE, Engine
from detectors.events import Event, Rejected, decode_object
from detectors.messages import Signal
from streams import simulate


class Reference(Engine):
    """The engine with every fast path switched off, sweeps included."""

    def feed(self, event: Event, out: list[Decision]) -> Rejected | None:
        if self._earliest_ms is None or event.ts < self._earliest_ms:
            self._earliest_ms = event.ts
        if self.clock is None or event.ts > self.clock:
            out.extend(self.advance(event.ts))
        assert self.clock is not None
        if not self.dedupe.first_sighting(event.event_id, now_ms=self.clock):
            return DUPLICATE
        self._queue.append(event)
        rejected = self._drain(out)
        out.extend(self.advance(self.clock))
        self._handled += 1
        if self._handled % engine_module.SWEEP_EVERY == 0:
            self.sweep()
        return rejected

    def sweep(self) -> None:
        """Every account and device expired in full, every time."""
        if self.clock is None:
            return
        now, policy = self.clock, self.policy
        for key, state in list(self._accounts.items()):
            kept = account.expire(state, now_ms=now, policy=policy)
            if account.is_droppable(kept):
                del self._accounts[key]
            elif kept is not state:
                self._accounts[key] = kept
        for key, dstate in list(self._devices.items()):
            dkept = device.expire(dstate, now_ms=now, policy=policy)
            if device.is_empty(dkept):
                del self._devices[key]
            elif dkept is not dstate:
                self._devices[key] = dkept
        self.dedupe.expire(now_ms=now)


def roughened(seed: int, *, accounts: int, events: int) -> list[tuple[str, object]]:
    """A simulated workload with late, repeated and re-ordered inputs, and some invalid ones."""
    rng = random.Random(seed)
    out: list[tuple[str, object]] = []
    recent: list[tuple[str, object]] = []
    for topic, value in simulate.generate(accounts=accounts, events=events, seed=seed, days=3):
        r = rng.random()
        if r < 0.03:
            value = {**value, "ts": value["ts"] - rng.randrange(1, 3_600_000)}  # late
        elif r < 0.05 and recent:
            out.append(rng.choice(recent))  # a repeat (usually a duplicate)
        elif r < 0.055:
            out.append((topic, {**value, "ts": "soon"}))  # rejected by the decoder
        if 0.055 <= r < 0.07 and out:
            out.insert(len(out) - rng.randrange(1, min(40, len(out)) + 1), (topic, value))
        else:
            out.append((topic, value))
        recent = [*recent[-500:], (topic, value)]
    return out


def crowded(seed: int, *, accounts: int, events: int) -> list[tuple[str, object]]:
    """Few accounts, each mostly on its own device and sometimes on a few shared ones or on
    many: overflowing device caps, restrictions and status changes reaching devices."""
    rng = random.Random(seed)
    names = [f"a{i}" for i in range(accounts)]
    shared = [f"d{i}" for i in range(6)]
    ts = 1_767_225_600_000
    out: list[tuple[str, object]] = []
    for n in range(events):
        ts += rng.choice((1, 1000, 20_000, 600_000, 3_600_000, 86_400_000 * 9))
        at = ts - (rng.randrange(7_200_000) if rng.random() < 0.1 else 0)
        acct, eid = rng.choice(names), f"e{n}"
        pick = rng.random()
        device = f"h{acct}" if pick < 0.85 else rng.choice(shared) if pick < 0.9 else \
            f"x{rng.randrange(40)}" if pick < 0.95 else None
        r = rng.random()
        if r < 0.5:
            out.append(("device-signals", {
                "event_id": eid, "ts": at, "account_id": acct, "device_id": device or "d0",
                "emulator": rng.random() < 0.002, "phone_country": rng.choice(("KR", "KR", "US")),
                "carrier_verified": rng.random() < 0.97, "virtual_number": rng.random() < 0.002}))
        elif r < 0.8:
            out.append(("friend-adds", {"event_id": eid, "ts": at, "account_id": acct,
                                        "friend_id": f"f{rng.randrange(60)}", "device_id": device}))
        elif r < 0.9:
            out.append(("room-creations", {"event_id": eid, "ts": at, "account_id": acct,
                                           "room_id": f"r{rng.randrange(40)}",
                                           "room_type": rng.choice(("open", "group")),
                                           "device_id": device}))
        elif r < 0.97:
            out.append(("message-reports", {
                "event_id": eid, "ts": at, "reporter_id": rng.choice(names), "reported_id": acct,
                "target": "user", "reason": rng.choice(("spam", "harassment")),
                "room_id": rng.choice((None, "r1", "r2"))}))
        else:
            action = rng.choice(("restrict", "lift", "appeal_filed", "appeal_decided",
                                 "mark_false_positive"))
            out.append(("moderation-commands", {
                "command_id": eid, "ts": at, "account_id": acct, "actor": "op", "action": action,
                "scopes": ["add_friend"] if action == "restrict" else None,
                "granted": rng.random() < 0.5 if action == "appeal_decided" else None}))
        if rng.random() < 0.02:
            out.append(out[rng.randrange(max(0, len(out) - 30), len(out))])
    return [(t, {k: v for k, v in value.items() if v is not None}) for t, value in out]


def run(engine: Engine, inputs: list[tuple[str, object]]) -> list[bytes]:
    out: list[bytes] = []
    decisions: list[Decision] = []
    for topic, value in inputs:
        event = decode_object(topic, value)
        if type(event) is Rejected:
            out.append(b"rejected " + event.code.encode())
            continue
        status = engine.feed(event, decisions)  # type: ignore[arg-type]
        if status is not None:
            out.append(b"status " + status.code.encode())
        out.extend(d.to_json() for d in decisions)
        decisions.clear()
    return out


def same_state(fast: Engine, reference: Engine) -> bool:
    return (fast.accounts == reference.accounts and fast.devices == reference.devices
            and fast.dedupe.seen == reference.dedupe.seen and fast.clock == reference.clock)


WORKLOADS = {
    **{f"simulated-{seed}": (roughened, seed, 150 + 20 * seed, 5000) for seed in range(1, 7)},
    **{f"crowded-{seed}": (crowded, seed, 20, 3000) for seed in range(1, 9)},
}


def decided(engine: Engine, until: int) -> list[bytes]:
    return [d.to_json() for d in engine.advance(until)]


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_fast_paths_decide_and_store_exactly_what_the_stage_path_does(name, monkeypatch):
    make, seed, accounts, events = WORKLOADS[name]
    inputs = make(seed, accounts=accounts, events=events)
    monkeypatch.setattr(engine_module, "SWEEP_EVERY", 97 + seed * 13)  # sweeps mid-run, often
    monkeypatch.setattr(engine_module, "SWEEP_PER_ACCOUNT", 0)  # on the Reference's cadence
    until = max(v["ts"] for _, v in inputs if type(v["ts"]) is int) + 400 * 86_400_000  # type: ignore[index]
    half = len(inputs) // 2
    fast, reference = Engine(), Reference()
    want = run(reference, inputs[:half])
    assert run(fast, inputs[:half]) == want
    assert same_state(fast, reference)
    more = run(reference, inputs[half:])
    assert run(fast, inputs[half:]) == more
    assert same_state(fast, reference)
    lifts = decided(reference, until)
    assert decided(fast, until) == lifts
    want += more + lifts
    assert sum(b'"restricted"' in line for line in want) > 10
    assert any(b'"lifted"' in line for line in want)
    fast.sweep()
    reference.sweep()
    assert same_state(fast, reference)


@pytest.mark.parametrize("flags", [
    {}, {"emulator": True}, {"virtual_number": True},
    {"phone_country": "US", "carrier_verified": False}, {"emulator": True, "virtual_number": True},
])
def test_stateless_signals_are_run_triggers_signals_whatever_the_state(flags):
    event = decode_object("device-signals", {"event_id": "e1", "ts": 5, "account_id": "a",
                                             "device_id": "d", **flags})
    busy = account.AccountState(windows={"friend_add_burst": ()}, devices=(("d", 1),))
    for state in (account.EMPTY, busy):
        _, want = account.run_triggers(state, event, now_ms=5, policy=DEFAULT_POLICY)
        assert account.stateless_signals(event, now_ms=5, policy=DEFAULT_POLICY) == want
    friend = decode_object("friend-adds", {"event_id": "e2", "ts": 5, "account_id": "a",
                                           "friend_id": "b"})
    assert account.stateless_signals(friend, now_ms=5, policy=DEFAULT_POLICY) is None


def bursting_on_own_device(*, adds: int, step_ms: int, extra: list[tuple[str, object]]
                           ) -> list[tuple[str, object]]:
    """One account adding a new friend every `step_ms` from its own device: restricted at the
    30th add, then signalling on every add (absorbed, or extended once lift_at moves 1 h)."""
    ts = 1_767_225_600_000
    out: list[tuple[str, object]] = [
        ("friend-adds", {"event_id": f"e{i}", "ts": ts + i * step_ms, "account_id": "m",
                         "friend_id": f"f{i}", "device_id": "dm"}) for i in range(adds)]
    for at, item in extra:
        out.insert(at, item)  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize(("adds", "step_ms", "extra"), [
    (120, 1_000, []),  # absorbed adds, pending use after pending use
    (400, 20_000, []),  # lift_at moves an hour every 180 adds: extended, then absorbed again
    (90, 1_000, [(60, ("device-signals", {  # an absorbed stateless signal on the same device
        "event_id": "s1", "ts": 1_767_225_660_000, "account_id": "m", "device_id": "dm",
        "emulator": True}))]),
    (90, 1_000, [(60, ("device-signals", {  # the scopes grow: extended, not absorbed
        "event_id": "s1", "ts": 1_767_225_660_000, "account_id": "m", "device_id": "dm",
        "virtual_number": True}))]),
    (90, 1_000, [(50, ("friend-adds", {  # another account joins the device: round trip again
        "event_id": "o1", "ts": 1_767_225_650_000, "account_id": "o", "friend_id": "x",
        "device_id": "dm"}))]),
    (90, 1_000, [(50, ("moderation-commands", {  # status change mid-burst
        "command_id": "c1", "ts": 1_767_225_650_000, "account_id": "m", "actor": "op",
        "action": "restrict", "scopes": ["report"]}))]),
])
def test_absorbed_signals_on_a_sole_device_decide_and_store_what_the_stage_path_does(
        adds, step_ms, extra):
    inputs = bursting_on_own_device(adds=adds, step_ms=step_ms, extra=extra)
    fast, reference = Engine(), Reference()
    assert run(fast, inputs) == run(reference, inputs)
    assert fast._uses.get("dm", ("",))[0] in ("m", "")  # (a pending use is only ever m's)
    assert same_state(fast, reference)
    until = inputs[-1][1]["ts"] + 400 * 86_400_000  # type: ignore[index]
    assert decided(fast, until) == decided(reference, until)
    assert same_state(fast, reference)


def test_an_absorbed_burst_is_a_quiet_use_written_behind():
    inputs = bursting_on_own_device(adds=60, step_ms=1_000, extra=[])
    engine = Engine()
    assert sum(b'"restricted"' in line for line in run(engine, inputs)) == 1
    last = inputs[-1][1]
    assert engine._uses["dm"] == ("m", last["ts"])  # type: ignore[index]
    r = engine.accounts["m"].lifecycle.restriction
    assert r is not None and r.last_signal_at == last["ts"]  # type: ignore[index]


SIGNALS = {
    "friend": Signal("friend_add_burst", 2_000, "e2", ("add_friend",), {"count": 31}),
    "scope-growing": Signal("virtual_number", 2_000, "e2", ("join_open_chat",), {}),
    "late": Signal("friend_add_burst", 500, "e0", ("add_friend",), {"count": 31}),
    "upholding": Signal("report_flood", 2_000, "r2", (), {}, False,
                                (("rep", "r2"),)),
    "known-upheld": Signal("report_flood", 2_000, "r1", (), {}, False,
                                   (("rep", "r1"),)),
    "moving-lift": Signal("friend_add_burst", 4_000_000, "e9", ("add_friend",), {}),
}


@pytest.mark.parametrize("restriction", [
    None,
    policy_module.Restriction(1_000, 1, ("add_friend",), ("friend_add_burst",),
                              1_000 + 14 * 86_400_000, 1_000, upheld=(("rep", "r1"),)),
    policy_module.Restriction(1_000, 4, ("add_friend",), ("friend_add_burst",), None, 1_000),
])
@pytest.mark.parametrize("names", [("friend",), ("scope-growing",), ("late",), ("upholding",),
                                   ("known-upheld",), ("moving-lift",), ("friend", "late")])
def test_absorb_signals_is_apply_signals_when_it_answers(restriction, names):
    state = account.AccountState(policy_module.Lifecycle(3, restriction),
                                 devices=(("d", 1_000),))
    signals = tuple(SIGNALS[n] for n in names)
    absorbed = account.absorb_signals(state, "a", signals, DEFAULT_POLICY)
    outcome = account.apply_signals(state, "a", signals, DEFAULT_POLICY)
    if absorbed is None:
        assert outcome.decisions or outcome.outbox or restriction is None
    else:
        assert outcome == account.Outcome(absorbed)


def test_sweeps_are_amortized_over_the_tracked_accounts(monkeypatch):
    """The sweep visits every account, so the next one waits max(SWEEP_EVERY,
    SWEEP_PER_ACCOUNT x accounts) inputs: a bounded number of visits per input."""
    monkeypatch.setattr(engine_module, "SWEEP_EVERY", 10)
    monkeypatch.setattr(engine_module, "SWEEP_PER_ACCOUNT", 4)
    engine = Engine()
    sweeps: list[tuple[int, int]] = []
    sweep = engine.sweep

    def counted() -> None:
        sweep()
        sweeps.append((engine._handled, len(engine._accounts)))

    monkeypatch.setattr(engine, "sweep", counted)
    t0 = 1767225600000
    run(engine, [("friend-adds", {"event_id": f"e{i}", "ts": t0 + i, "account_id": f"a{i % 50}",
                                  "friend_id": f"f{i}"}) for i in range(2000)])
    assert sweeps[0][0] == 10
    for (at, accounts), (after, _) in zip(sweeps, sweeps[1:]):
        assert after - at == max(10, 4 * accounts)
    assert len(sweeps) < 2000 / (4 * 50) + 3
