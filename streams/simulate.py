"""`warden simulate`: a labelled, seeded synthetic population for back-testing (SPEC "Interfaces").

`plan()` draws the population and scripts every abuse story up front (a few
per cent of the events); `Population.events()` then streams background
activity day by day, merged with the scripts, in event-time order. Only
`random.Random(seed)` is used, so a seed gives byte-identical output. Abuse
scripts clear the SPEC thresholds with a margin; normal activity is capped
far below them (≤10 friend adds and ≤2 rooms per account and day, ≤2 casual
reporters per reported account and day). Labels (`expected_triggers`,
`should_restrict`) are the ground truth that bench/score.py measures.

Repeat offenders need a second restriction within the span although level 1
lasts 14 days: an operator `lift` ends each restriction after ~25 h (a manual
lift is not an overturn, so it still counts toward the level), then the next
burst restricts again at the next level. Evaders appear on a repeat
offender's device while its ≥2nd restriction is active.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import orjson

START_MS = 1767225600000  # 2026-01-01T00:00Z
MIN_MS, HOUR_MS, DAY_MS = 60_000, 3_600_000, 86_400_000
MIN_DAYS = 3
TOPICS = ("friend-adds", "room-creations", "message-reports", "device-signals",
          "moderation-commands")
_F, _R, _M, _D, _C = range(5)

KINDS = ("normal", "friend_spammer", "room_spammer", "spammer", "emulator", "virtual_number",
         "tainted", "evader", "repeat_offender", "brigade_target", "brigader")
DEFAULT_MIX: dict[str, float] = {  # shares of accounts; normal takes the rest
    "friend_spammer": 0.012, "room_spammer": 0.012, "spammer": 0.012, "emulator": 0.008,
    "virtual_number": 0.008, "tainted": 0.004, "evader": 0.004, "repeat_offender": 0.008,
    "brigade_target": 0.002, "brigader": 0.03,
}
EXPECTED = {"friend_spammer": ("friend_add_burst",), "room_spammer": ("room_creation_burst",),
            "spammer": ("report_flood",), "emulator": ("emulator",),
            "virtual_number": ("virtual_number",), "tainted": ("tainted_device",),
            "evader": ("ban_evasion",)}
MIN_BRIGADE = 12  # even 12 x 0.5 = 6.0 would cross 5.0 without the spec's weighting
SPAMMY = ("spam", "gambling", "obscene")
REASONS = (*SPAMMY, "harassment", "privacy", "impersonation", "rights", "other")
OTHER_REASONS = ("harassment", "impersonation", "other", "privacy")
REPORT_TARGETS = ("message", "user", "profile", "room")
HOME = (False, "KR", True, False)  # (emulator, phone_country, carrier_verified, virtual_number)
SESSION_MS = 45 * MIN_MS


@dataclass(frozen=True, slots=True)
class Label:
    account_id: str
    label: str
    expected_triggers: tuple[str, ...]
    should_restrict: bool

    def to_json(self) -> bytes:
        return orjson.dumps({"account_id": self.account_id, "label": self.label,
                             "expected_triggers": list(self.expected_triggers),
                             "should_restrict": self.should_restrict})


@dataclass(frozen=True, slots=True)
class Population:
    """The planned population: labels now, events on demand (re-iterable, deterministic)."""

    seed: int
    start_ms: int
    days: int
    ids: tuple[str, ...]
    labels: tuple[Label, ...]
    scripted: tuple[tuple[Any, ...], ...]  # (ts, seq, topic, ...fields), sorted
    active: tuple[int, ...]  # accounts with background activity
    per_day: tuple[array, ...]  # per day: background events of each active account
    devices: tuple[tuple[tuple[str, tuple, str | None], ...], ...]  # per account: (id, profile, ip)
    casual_targets: tuple[int, ...]  # who normals may casually report
    friend_space: int

    def label_counts(self) -> Counter[str]:
        return Counter(label.label for label in self.labels)

    def events(self) -> Iterator[tuple[str, dict[str, Any]]]:
        rng = random.Random(f"{self.seed}/background")
        prefix = f"sim{self.seed}-"
        k, n, seq = 0, 0, len(self.scripted)
        for day in range(self.days):
            day_end = self.start_ms + (day + 1) * DAY_MS
            batch: list[tuple[Any, ...]] = []
            seq = self._background(rng, day, batch, seq)
            while k < len(self.scripted) and self.scripted[k][0] < day_end:
                batch.append(self.scripted[k])
                k += 1
            batch.sort()
            for rec in batch:
                n += 1
                yield TOPICS[rec[2]], _value(rec, f"{prefix}{n}")

    def _background(self, rng: random.Random, day: int, out: list[tuple[Any, ...]],
                    seq: int) -> int:
        """Everyday sessions: a device signal, then friend adds, rooms, rare reports, heartbeats."""
        rand, ids, day0 = rng.random, self.ids, self.start_ms + day * DAY_MS
        counts, n_ids, targets = self.per_day[day], len(ids), self.casual_targets
        reported: Counter[int] = Counter()
        rooms = 0
        for j, c in enumerate(counts):
            if not c:
                continue
            a = self.active[j]
            acct, devs = ids[a], self.devices[a]
            n_sess = min(c, 1 if c < 6 else 2 if c < 30 else 3)
            sessions = []
            for _ in range(n_sess):
                dev = devs[0] if len(devs) == 1 or rand() < 0.7 else devs[1]
                ts = day0 + int(rand() * (DAY_MS - HOUR_MS))
                sessions.append((ts, dev[0]))
                out.append((ts, seq, _D, acct, dev[0], dev[1], dev[2]))
                seq += 1
            friends = made = reports = 0
            for _ in range(c - n_sess):
                s0, dev_id = sessions[int(rand() * n_sess)]
                ts = s0 + 1000 + int(rand() * SESSION_MS)
                used = dev_id if ts % 10 else None  # the optional field is sometimes absent
                u = rand()
                if u < 0.40 and friends < 10:
                    friends += 1
                    f = (a + 1 + int(rand() * (n_ids - 1))) % n_ids
                    out.append((ts, seq, _F, acct, ids[f], used))
                elif u < 0.45 and made < 2:
                    made += 1
                    rooms += 1
                    kind = "open" if rand() < 0.25 else "group"
                    out.append((ts, seq, _R, acct, f"room-{day + 1}-{rooms}", kind, used))
                elif u < 0.46 and reports < 1 and targets:
                    t = targets[int(rand() * len(targets))]
                    if t == a or reported[t] >= 2:
                        _signal(out, ts, seq, acct, devs[0])
                    else:
                        reports += 1
                        reported[t] += 1
                        target = REPORT_TARGETS[int(rand() * 4)]
                        room = f"room-{day + 1}-r{seq}" if target in ("message", "room") else None
                        msg = f"msg-{seq}" if target == "message" else None
                        reason = REASONS[int(rand() * len(REASONS))]
                        out.append((ts, seq, _M, acct, ids[t], target, reason, room, msg))
                else:
                    _signal(out, ts, seq, acct, devs[0] if dev_id == devs[0][0] else devs[1])
                seq += 1
        return seq


def _signal(out: list[tuple[Any, ...]], ts: int, seq: int, acct: str, dev: tuple) -> None:
    out.append((ts, seq, _D, acct, dev[0], dev[1], dev[2]))


def _value(rec: tuple[Any, ...], eid: str) -> dict[str, Any]:
    """Build one topic value from a compact record (SPEC "Topics" field order)."""
    t, ts = rec[2], rec[0]
    if t == _D:
        v: dict[str, Any] = {"event_id": eid, "ts": ts, "account_id": rec[3], "device_id": rec[4]}
        emulator, country, verified, virtual = rec[5]
        if emulator is not None:
            v["emulator"] = emulator
        if country is not None:
            v["phone_country"] = country
        if verified is not None:
            v["carrier_verified"] = verified
        if virtual is not None:
            v["virtual_number"] = virtual
        if rec[6] is not None:
            v["ip"] = rec[6]
        return v
    if t == _F:
        v = {"event_id": eid, "ts": ts, "account_id": rec[3], "friend_id": rec[4]}
        if rec[5] is not None:
            v["device_id"] = rec[5]
        return v
    if t == _R:
        v = {"event_id": eid, "ts": ts, "account_id": rec[3], "room_id": rec[4],
             "room_type": rec[5]}
        if rec[6] is not None:
            v["device_id"] = rec[6]
        return v
    if t == _M:
        v = {"event_id": eid, "ts": ts, "reporter_id": rec[3], "reported_id": rec[4],
             "target": rec[5], "reason": rec[6]}
        if rec[7] is not None:
            v["room_id"] = rec[7]
        if rec[8] is not None:
            v["message_id"] = rec[8]
        return v
    v = {"command_id": eid.replace("-", "-cmd-", 1), "ts": ts, "account_id": rec[3],
         "actor": rec[4], "action": rec[5]}
    v.update(rec[6])
    return v


def generate(*, accounts: int, events: int, seed: int, start_ms: int = START_MS, days: int = 7,
             mix: Mapping[str, float] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(topic, value) pairs in event-time order."""
    return plan(accounts=accounts, events=events, seed=seed, start_ms=start_ms, days=days,
                mix=mix).events()


def labels(*, accounts: int, events: int, seed: int, start_ms: int = START_MS, days: int = 7,
           mix: Mapping[str, float] | None = None) -> tuple[Label, ...]:
    """Ground truth for the same arguments as `generate`."""
    return plan(accounts=accounts, events=events, seed=seed, start_ms=start_ms, days=days,
                mix=mix).labels


def kind_counts(accounts: int, mix: Mapping[str, float] | None = None) -> dict[str, int]:
    """Accounts per kind: each abusive kind ≥1, ≥MIN_BRIGADE brigaders per target."""
    shares = dict(DEFAULT_MIX if mix is None else mix)
    unknown = set(shares) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds in mix: {', '.join(sorted(unknown))}")
    shares.pop("normal", None)
    counts = {k: max(1, round(f * accounts)) if f > 0 else 0 for k, f in shares.items()}
    if counts.get("evader") and not counts.get("repeat_offender"):
        counts["repeat_offender"] = 1
    if counts.get("tainted") and not counts.get("spammer"):
        counts["spammer"] = 1
    crews = MIN_BRIGADE * counts.get("brigade_target", 0)
    counts["brigader"] = max(counts.get("brigader", 0), crews) if crews else 0
    counts["normal"] = accounts - sum(counts.values())
    if counts["normal"] < max(40, accounts // 2):
        raise ValueError(f"{accounts} accounts leave too few normal accounts for this mix")
    return {k: counts.get(k, 0) for k in KINDS}


def plan(*, accounts: int, events: int, seed: int, start_ms: int = START_MS, days: int = 7,
         mix: Mapping[str, float] | None = None) -> Population:
    """Draw the population, script the abuse stories and size everyone's background activity."""
    if days < MIN_DAYS:
        raise ValueError(f"days must be ≥ {MIN_DAYS} (repeat offenders need two restrictions)")
    counts = kind_counts(accounts, mix)
    rng = random.Random(f"{seed}/plan")
    kinds = [k for k in KINDS for _ in range(counts[k])]
    rng.shuffle(kinds)
    width = max(6, len(str(accounts - 1)))
    ids = tuple(f"acct-{i:0{width}d}" for i in range(accounts))
    script = _Script(rng, ids, kinds, start_ms, start_ms + days * DAY_MS, width)
    script.run()
    scripted = sorted(script.recs)
    budget = events - len(scripted)
    active = tuple(i for i, k in enumerate(kinds) if k not in ("brigader", "evader"))
    if budget < 0:
        raise ValueError(f"events={events} is below the {len(scripted)} the abuse stories need")
    weights = [min(rng.paretovariate(1.2), 200.0) for _ in active]  # few accounts, most events
    total_w = sum(weights)
    shares = [budget * w / total_w for w in weights]
    totals = [int(s) for s in shares]
    by_remainder = sorted(range(len(active)), key=lambda j: totals[j] - shares[j])
    for j in by_remainder[: budget - sum(totals)]:
        totals[j] += 1
    per_day = tuple(array("I", [0]) * len(active) for _ in range(days))
    for j, n in enumerate(totals):
        base, extra = divmod(n, days)
        for d in range(days):
            per_day[d][j] = base
        for d in rng.sample(range(days), extra):
            per_day[d][j] += 1
    labels_ = tuple(Label(ids[i], k, script.expected.get(i, EXPECTED.get(k, ())),
                          k not in ("normal", "brigade_target", "brigader"))
                    for i, k in enumerate(kinds))
    casual = tuple(i for i, k in enumerate(kinds) if k == "normal")
    return Population(seed, start_ms, days, ids, labels_, tuple(scripted), active, per_day,
                      tuple(script.devices), casual, script.friend_space)


class _Script:
    """Scripts every non-normal story as compact records; one method per story."""

    def __init__(self, rng: random.Random, ids: tuple[str, ...], kinds: list[str], start_ms: int,
                 end_ms: int, width: int) -> None:
        self.rng, self.ids, self.kinds, self.start, self.end = rng, ids, kinds, start_ms, end_ms
        self.width = width
        self.friend_space = max(len(ids), 1000)
        self.recs: list[tuple[Any, ...]] = []
        self.devices: list[tuple[tuple[str, tuple, str | None], ...]] = []
        self.expected: dict[int, tuple[str, ...]] = {}
        self.n_dev = self.n_room = 0
        self.by_kind: dict[str, list[int]] = {k: [] for k in KINDS}
        for i, k in enumerate(kinds):
            self.by_kind[k].append(i)

    def add(self, ts: int, topic: int, *fields: Any) -> None:
        assert self.start <= ts < self.end, "a scripted event left the simulated span"
        self.recs.append((ts, len(self.recs), topic, *fields))

    def device(self, profile: tuple = HOME) -> tuple[str, tuple, str | None]:
        self.n_dev += 1
        r = self.rng.randrange
        ip = None if r(10) == 0 else f"{r(1, 224)}.{r(256)}.{r(256)}.{r(1, 255)}"
        return (f"dev-{self.n_dev:07d}", profile, ip)

    def room(self) -> str:
        self.n_room += 1
        return f"room-0-{self.n_room}"

    def when(self, lo_ms: int, hi_ms: int) -> int:
        return self.rng.randrange(lo_ms, max(lo_ms + 1, hi_ms))

    def signal(self, ts: int, a: int, dev: tuple[str, tuple, str | None]) -> None:
        self.add(ts, _D, self.ids[a], dev[0], dev[1], dev[2])

    def command(self, ts: int, a: int, actor: str, action: str, **extra: Any) -> None:
        self.add(ts, _C, self.ids[a], actor, action, extra)

    def run(self) -> None:
        rng = self.rng
        for k in self.kinds:  # own phones: KR, carrier-verified; a few travellers
            profile = HOME if k != "normal" or rng.random() < 0.97 else (False, "JP", True, False)
            own = [self.device(profile)]
            if rng.random() < 0.3:
                own.append(self.device(HOME if rng.random() < 0.9 else (None, None, None, None)))
            self.devices.append(tuple(own) if k not in ("brigader", "evader") else ())
        fires: dict[int, int] = {}  # account -> when its last scripted offence ended
        for a in self.by_kind["friend_spammer"]:
            fires[a] = self.friend_spam(a)
        for a in self.by_kind["room_spammer"]:
            fires[a] = self.room_spam(a)
        for a in self.by_kind["emulator"]:
            fires[a] = self.bad_device(a, (True, "KR", True, False))
        for a in self.by_kind["virtual_number"]:
            country = rng.choice(("US", "VN", "PH", "NG", "GB"))
            variants: tuple[tuple, ...] = (
                (None, country, False, True), (False, country, False, False),
                (False, "KR", True, True))
            fires[a] = self.bad_device(a, rng.choice(variants))
        normals = self.by_kind["normal"]
        manual = rng.sample(normals, max(1, len(normals) // 1000))
        for a in manual:  # a path that must not count as a detection; kept out of floods
            t = self.when(self.start + HOUR_MS, self.end - 3 * DAY_MS)
            self.command(t, a, "op:sim", "restrict", scopes=["join_open_chat"],
                         duration_ms=2 * DAY_MS, note="simulated manual restriction")
        outcomes = {a: self.outcome() for a in fires}
        floods = self.floods(sorted(set(normals) - set(manual)))
        outcomes.update({a: o for a, (_, o) in floods.items()})
        fires.update({a: end for a, (end, _) in floods.items()})
        for a, end in fires.items():
            self.moderate(a, end, outcomes[a])
        sources = [a for a, (_, o) in floods.items() if o not in ("granted", "false_positive")]
        for n, a in enumerate(self.by_kind["tainted"]):
            src = sources[n % len(sources)]
            self.taint(a, src, floods[src][0])
        originals = [(a, self.repeat_offend(a)) for a in self.by_kind["repeat_offender"]]
        for n, a in enumerate(self.by_kind["evader"]):
            src, last_end = originals[n % len(originals)]
            self.evade(a, src, last_end)
        self.brigades()
        for a in rng.sample(normals, max(1, len(normals) // 1000)):  # appeal while unrestricted
            self.command(self.when(self.start + HOUR_MS, self.end - HOUR_MS), a, self.ids[a],
                         "appeal_filed")

    def outcome(self) -> str:
        u = self.rng.random()
        return ("granted" if u < 0.06 else "denied" if u < 0.12 else "duplicate" if u < 0.15
                else "false_positive" if u < 0.20 else "none")

    def moderate(self, a: int, fired_end: int, outcome: str) -> None:
        """Appeals and false-positive marks after a restriction, when they fit the span."""
        filed = fired_end + self.when(HOUR_MS, 12 * HOUR_MS)
        decided = filed + self.when(HOUR_MS, 24 * HOUR_MS)
        if outcome == "none" or decided >= self.end:
            return
        if outcome == "false_positive":
            self.command(filed, a, "op:sim", "mark_false_positive", note="simulated false positive")
            return
        self.command(filed, a, self.ids[a], "appeal_filed")
        if outcome == "duplicate":
            self.command(filed + MIN_MS, a, self.ids[a], "appeal_filed")
        self.command(decided, a, "op:sim", "appeal_decided", granted=outcome == "granted")

    def friend_burst(self, a: int, t0: int, n: int, span_ms: int) -> int:
        friends = [f for f in self.rng.sample(range(self.friend_space), n + 1) if f != a][:n]
        dev = self.devices[a][0]
        self.signal(t0 - self.when(MIN_MS, 5 * MIN_MS), a, dev)
        times = sorted(t0 + self.rng.randrange(span_ms) for _ in range(n))
        for ts, f in zip(times, friends, strict=True):
            fid = self.ids[f] if f < len(self.ids) else f"acct-{f:0{self.width}d}"
            self.add(ts, _F, self.ids[a], fid, dev[0])
        return times[-1]

    def friend_spam(self, a: int) -> int:
        """≥35 distinct friends in ≤9 min (once or twice), or 110 to 150 within 12 to 22 h."""
        rng = self.rng
        if rng.random() < 0.7:
            t = self.when(self.start + HOUR_MS, self.end - 3 * DAY_MS)
            end = self.friend_burst(a, t, rng.randint(35, 60), rng.randint(5, 9) * MIN_MS)
            if rng.random() < 0.3:
                t = end + self.when(2 * HOUR_MS, 12 * HOUR_MS)
                end = self.friend_burst(a, t, rng.randint(35, 60), rng.randint(5, 9) * MIN_MS)
            return end
        t = self.when(self.start + HOUR_MS, self.end - 3 * DAY_MS)
        return self.friend_burst(a, t, rng.randint(110, 150), rng.randint(12, 22) * HOUR_MS)

    def room_burst(self, a: int, t0: int, n: int, span_ms: int, open_share: float) -> int:
        dev = self.devices[a][0]
        self.signal(t0 - self.when(MIN_MS, 5 * MIN_MS), a, dev)
        times = sorted(t0 + self.rng.randrange(span_ms) for _ in range(n))
        for ts in times:
            kind = "open" if self.rng.random() < open_share else "group"
            self.add(ts, _R, self.ids[a], self.room(), kind, dev[0])
        return times[-1]

    def room_spam(self, a: int) -> int:
        """6 to 10 open rooms within ≤50 min, or 24 to 32 rooms (mostly group) within 10 to 20 h."""
        rng = self.rng
        t = self.when(self.start + HOUR_MS, self.end - 3 * DAY_MS)
        if rng.random() < 0.6:
            return self.room_burst(a, t, rng.randint(6, 10), rng.randint(20, 50) * MIN_MS, 1.0)
        return self.room_burst(a, t, rng.randint(24, 32), rng.randint(10, 20) * HOUR_MS, 0.1)

    def bad_device(self, a: int, profile: tuple) -> int:
        """A second device whose every signal is a trigger (emulator / virtual number)."""
        dev = self.device(profile)
        self.devices[a] = (*self.devices[a], dev)
        t = self.when(self.start + HOUR_MS, self.end - 3 * DAY_MS)
        last = t
        for k in range(self.rng.randint(1, 4)):
            last = t + k * self.when(HOUR_MS, 10 * HOUR_MS)
            self.signal(last, a, dev)
            if self.rng.random() < 0.5:
                self.add(last + MIN_MS, _F, self.ids[a], self.ids[(a + 1 + k) % len(self.ids)],
                         dev[0])
        return last + MIN_MS

    def floods(self, pool: list[int]) -> dict[int, tuple[int, str]]:
        """Spammers: 13 to 20 fresh credible reporters (0.5 each, own devices), ≥80% spam-ish.

        Reporters of a flood that will be overturned are used for that flood only, so no
        reporter collects overturned reports (or strikes) and every other flood keeps its weight.
        """
        rng, spammers = self.rng, self.by_kind["spammer"]
        rng.shuffle(pool)
        plans = {a: ("none" if n == 0 else self.outcome()) for n, a in enumerate(spammers)}
        overturned = [a for a in spammers if plans[a] in ("granted", "false_positive")]
        result: dict[int, tuple[int, str]] = {}
        for a in overturned + [a for a in spammers if a not in set(overturned)]:
            n = rng.randint(13, 20)
            if a in overturned and len(pool) >= 100 + n:
                reporters, pool = pool[:n], pool[n:]
            else:
                plans[a] = "denied" if a in overturned else plans[a]
                reporters = rng.sample(pool, n)
            t0 = self.when(self.start + 2 * HOUR_MS, self.end - 2 * DAY_MS)
            self.signal(t0 - self.when(10 * MIN_MS, 2 * HOUR_MS), a, self.devices[a][0])
            span = self.when(30 * MIN_MS, 4 * HOUR_MS)
            spammy = math.ceil(0.8 * n)
            reasons = [rng.choice(SPAMMY) for _ in range(spammy)]
            reasons += [rng.choice(OTHER_REASONS) for _ in range(n - spammy)]
            rng.shuffle(reasons)
            times = sorted(t0 + rng.randrange(span) for _ in range(n))
            for ts, r, reason in zip(times, reporters, reasons, strict=True):
                target = rng.choice(("message", "message", "message", "user", "profile"))
                room = self.room() if target == "message" or rng.random() < 0.3 else None
                msg = f"msg-s{ts}-{r}" if target == "message" else None
                self.add(ts, _M, self.ids[r], self.ids[a], target, reason, room, msg)
            result[a] = (times[-1], plans[a])
        return result

    def taint(self, a: int, src: int, flood_end: int) -> None:
        """A later account picks up the flooded spammer's device after its restriction."""
        t = min(flood_end + self.when(2 * HOUR_MS, 24 * HOUR_MS), self.end - 2 * HOUR_MS)
        dev = self.devices[src][0]
        self.signal(t, a, dev)
        for k in range(self.rng.randint(1, 3)):
            friend = self.ids[(a + 7 + k) % len(self.ids)]
            self.add(t + (k + 1) * self.when(MIN_MS, 20 * MIN_MS), _F, self.ids[a], friend, dev[0])

    def repeat_offend(self, a: int) -> int:
        """2 to 4 restrictions from alternating bursts, each ended by an operator lift ~25 h on."""
        rng = self.rng
        planned = rng.choice((2, 3, 3, 4))
        t = self.when(self.start + HOUR_MS, self.start + 12 * HOUR_MS)
        used: set[str] = set()
        friend_first = rng.random() < 0.5
        end = t
        for k in range(planned):
            if (k % 2 == 0) == friend_first:
                end = self.friend_burst(a, t, rng.randint(35, 50), rng.randint(5, 9) * MIN_MS)
                used.add("friend_add_burst")
            else:
                end = self.room_burst(a, t, rng.randint(6, 9), rng.randint(20, 50) * MIN_MS, 1.0)
                used.add("room_creation_burst")
            lift = end + 25 * HOUR_MS + self.when(0, HOUR_MS)
            if k == planned - 1 or lift + 5 * HOUR_MS + 12 * HOUR_MS >= self.end:
                break
            self.command(lift, a, "op:sim", "lift", note="simulated operator lift")
            t = lift + self.when(30 * MIN_MS, 3 * HOUR_MS)
        if k == 3:  # level 4 is indefinite: an early appeal meets the 90-day cooldown
            self.command(end + self.when(HOUR_MS, 6 * HOUR_MS), a, self.ids[a], "appeal_filed")
        self.expected[a] = tuple(sorted(used))
        return end

    def evade(self, a: int, src: int, src_end: int) -> None:
        """A brand-new account whose first use is the device of a level ≥2 restricted account."""
        t = src_end + self.when(HOUR_MS, 10 * HOUR_MS)
        dev = self.devices[src][0]
        self.signal(t, a, dev)
        for k in range(self.rng.randint(2, 5)):
            ts = t + (k + 1) * self.when(5 * MIN_MS, 30 * MIN_MS)
            self.add(ts, _F, self.ids[a], self.ids[(a + 3 + k) % len(self.ids)], dev[0])

    def brigades(self) -> None:
        """Fresh accounts mass-report an innocent; the spec's weighting keeps the score ≤3.0.

        `devices`: 2 or 3 shared devices → ≤3 groups x 0.5. `room`: one room_id, ≤2 bursts of
        ≤8 min, ≥17 min apart → ≤6 counted x 0.5. `both`: shared devices and one room.
        """
        rng = self.rng
        targets, brigaders = self.by_kind["brigade_target"], self.by_kind["brigader"]
        for n, victim in enumerate(targets):
            crew = brigaders[n::len(targets)]
            variant = ("devices", "room", "both")[n % 3]
            shared = [self.device() for _ in range(rng.randint(2, 3))]
            t0 = self.when(self.start + 2 * HOUR_MS, self.end - 4 * HOUR_MS)
            room = self.room()
            for k, b in enumerate(crew):
                dev = shared[k % len(shared)] if variant != "room" else self.device()
                self.signal(t0 - self.when(5 * MIN_MS, 90 * MIN_MS), b, dev)
                reason = rng.choice(("harassment", "spam", "other", "impersonation", "obscene"))
                if variant == "devices":
                    ts = t0 + rng.randrange(3 * HOUR_MS)
                    self.add(ts, _M, self.ids[b], self.ids[victim], rng.choice(("user", "profile")),
                             reason, None, None)
                else:
                    burst = t0 + (25 * MIN_MS if k % 2 else 0)
                    ts = burst + rng.randrange(8 * MIN_MS)
                    self.add(ts, _M, self.ids[b], self.ids[victim], "message", reason, room,
                             f"msg-b{ts}-{b}")


def write_events(pairs: Iterable[tuple[str, dict[str, Any]]], out: IO[bytes]) -> int:
    """Replay-file lines `{"topic": ..., "value": {...}}`; returns the count."""
    n, buf, dumps = 0, [], orjson.dumps
    for topic, value in pairs:
        buf.append(dumps({"topic": topic, "value": value}))
        n += 1
        if len(buf) >= 8192:
            out.write(b"\n".join(buf) + b"\n")
            buf.clear()
    if buf:
        out.write(b"\n".join(buf) + b"\n")
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--accounts", type=int, default=10_000, help="accounts (exact)")
    parser.add_argument("--events", type=int, default=200_000, help="events (approximate)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    parser.add_argument("--days", type=int, default=7, help=f"simulated span (≥{MIN_DAYS})")
    parser.add_argument("--start-ms", type=int, default=START_MS, help="event time of the start")
    parser.add_argument("--out", default="-",
                        help="events JSONL for `warden replay` ('-' = stdout)")
    parser.add_argument("--labels", help="ground-truth JSONL, one line per account")
    parser.add_argument("--to-kafka", action="store_true",
                        help="publish to the input topics (WARDEN_KAFKA_BOOTSTRAP) instead of --out")
    parser.add_argument("--rate", type=float, default=2000.0,
                        help="events/s with --to-kafka (0 = as fast as possible)")


def run(args: argparse.Namespace) -> int:
    try:
        pop = plan(accounts=args.accounts, events=args.events, seed=args.seed,
                   start_ms=args.start_ms, days=args.days)
    except ValueError as exc:
        print(f"warden simulate: {exc}", file=sys.stderr)
        return 2
    if args.to_kafka:
        n = _to_kafka(pop, args)
    elif args.out == "-":
        n = write_events(pop.events(), sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        with open(args.out, "wb") as fh:
            n = write_events(pop.events(), fh)
    if args.labels:
        with open(args.labels, "wb") as fh:
            fh.write(b"".join(label.to_json() + b"\n" for label in pop.labels))
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(pop.label_counts().items()))
    print(f"simulated {n} events, {len(pop.ids)} accounts (seed {args.seed}): {kinds}",
          file=sys.stderr)
    return 0


def _to_kafka(pop: Population, args: argparse.Namespace) -> int:
    import asyncio

    from streams.preflight import ensure_topics
    from streams.producer import publish
    from streams.settings import Settings

    settings = Settings.from_env()
    asyncio.run(ensure_topics(settings))
    total = sum(1 for _ in pop.events())
    return asyncio.run(publish(settings, pop.events(), rate=args.rate or None, total=total,
                               progress=True))
