"""streams.simulate: determinism, the replay-file contract, and labels that tell the truth."""

from __future__ import annotations

import argparse
import io
from bisect import bisect_left
from collections import Counter, defaultdict
from typing import Any

import orjson
import pytest

from detectors.events import Rejected, decode_object
from streams import simulate

SMALL = {"accounts": 2000, "events": 50_000, "seed": 11}
DAY_MS = 86_400_000

REQUIRED: dict[str, dict[str, Any]] = {  # SPEC "Topics": required fields and their types
    "friend-adds": {"event_id": str, "ts": int, "account_id": str, "friend_id": str},
    "room-creations": {"event_id": str, "ts": int, "account_id": str, "room_id": str,
                       "room_type": ("group", "open")},
    "message-reports": {"event_id": str, "ts": int, "reporter_id": str, "reported_id": str,
                        "target": ("message", "user", "profile", "room"),
                        "reason": ("spam", "gambling", "obscene", "harassment", "privacy",
                                   "impersonation", "rights", "other")},
    "device-signals": {"event_id": str, "ts": int, "account_id": str, "device_id": str},
    "moderation-commands": {"command_id": str, "ts": int, "account_id": str, "actor": str,
                            "action": ("appeal_filed", "appeal_decided", "mark_false_positive",
                                       "restrict", "lift")},
}
OPTIONAL: dict[str, dict[str, type]] = {
    "friend-adds": {"device_id": str},
    "room-creations": {"device_id": str},
    "message-reports": {"room_id": str, "message_id": str},
    "device-signals": {"emulator": bool, "phone_country": str, "carrier_verified": bool,
                       "virtual_number": bool, "ip": str},
    "moderation-commands": {"granted": bool, "scopes": list, "duration_ms": int, "note": str},
}


def _bytes(**kw: Any) -> bytes:
    out = io.BytesIO()
    simulate.write_events(simulate.generate(**kw), out)
    return out.getvalue()


@pytest.fixture(scope="module")
def small() -> tuple[simulate.Population, list[tuple[str, dict[str, Any]]]]:
    pop = simulate.plan(**SMALL)
    return pop, list(pop.events())


def test_same_seed_gives_identical_bytes() -> None:
    kw = {"accounts": 600, "events": 12_000, "seed": 3}
    assert _bytes(**kw) == _bytes(**kw)
    assert simulate.labels(**kw) == simulate.labels(**kw)


def test_different_seed_gives_different_output() -> None:
    kw = {"accounts": 600, "events": 12_000}
    assert _bytes(**kw, seed=3) != _bytes(**kw, seed=4)


@pytest.mark.parametrize(("accounts", "events", "days"), [
    (300, 5_000, 3), (2000, 50_000, 7), (5000, 120_000, 10),
])
def test_event_count_is_within_five_percent_and_accounts_exact(accounts: int, events: int,
                                                               days: int) -> None:
    pop = simulate.plan(accounts=accounts, events=events, seed=1, days=days)
    n = sum(1 for _ in pop.events())
    assert abs(n - events) <= 0.05 * events
    assert len(pop.labels) == accounts == len({label.account_id for label in pop.labels})


def test_every_value_has_the_spec_fields_and_types(small) -> None:
    _, events = small
    for topic, value in events:
        for name, kind in REQUIRED[topic].items():
            assert name in value, (topic, name, value)
            if isinstance(kind, tuple):
                assert value[name] in kind, (topic, name, value)
            else:
                assert type(value[name]) is kind, (topic, name, value)
        for name, kind in OPTIONAL[topic].items():
            if name in value:
                assert type(value[name]) is kind, (topic, name, value)
        assert set(value) <= set(REQUIRED[topic]) | set(OPTIONAL[topic])


def test_every_event_is_accepted_by_the_decoder(small) -> None:
    _, events = small
    rejected = [(t, v) for t, v in events if isinstance(decode_object(t, v), Rejected)]
    assert rejected == []


def test_lines_are_sorted_by_ts_within_the_span(small) -> None:
    pop, events = small
    ts = [v["ts"] for _, v in events]
    assert ts == sorted(ts)
    assert pop.start_ms <= ts[0] and ts[-1] < pop.start_ms + pop.days * DAY_MS


def test_event_and_command_ids_are_unique(small) -> None:
    _, events = small
    ids = [v.get("event_id") or v["command_id"] for _, v in events]
    assert len(ids) == len(set(ids))
    assert all(0 < len(i) <= 128 for i in ids)


def test_labels_cover_every_kind_at_small_scale(small) -> None:
    pop, _ = small
    assert set(pop.label_counts()) == set(simulate.KINDS)
    for label in pop.labels:
        innocent = label.label in ("normal", "brigade_target", "brigader")
        assert label.should_restrict == (not innocent)
        assert bool(label.expected_triggers) == label.should_restrict
        assert set(orjson.loads(label.to_json())) == {
            "account_id", "label", "expected_triggers", "should_restrict"}


def test_moderation_paths_are_exercised(small) -> None:
    _, events = small
    actions = Counter(v["action"] for t, v in events if t == "moderation-commands")
    assert set(actions) == {"appeal_filed", "appeal_decided", "mark_false_positive", "restrict",
                            "lift"}
    granted = {v["granted"] for t, v in events if v.get("action") == "appeal_decided"}
    assert granted == {True, False}


def _max_in_window(times: list[int], window_ms: int) -> int:
    times = sorted(times)
    counts = (i + 1 - bisect_left(times, t - window_ms + 1) for i, t in enumerate(times))
    return max(counts, default=0)


def _by_account(events, topic: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t, v in events:
        if t == topic:
            out[v["account_id"]].append(v)
    return out


def test_normal_accounts_stay_well_under_the_burst_thresholds(small) -> None:
    pop, events = small
    calm = {lb.account_id for lb in pop.labels if not lb.should_restrict}
    for account, adds in _by_account(events, "friend-adds").items():
        if account in calm:
            times = [v["ts"] for v in adds]
            assert _max_in_window(times, 600_000) <= 10
            assert _max_in_window(times, DAY_MS) <= 20
    for account, rooms in _by_account(events, "room-creations").items():
        if account in calm:
            assert _max_in_window([v["ts"] for v in rooms], DAY_MS) <= 4
            opened = [v["ts"] for v in rooms if v["room_type"] == "open"]
            assert _max_in_window(opened, 3_600_000) <= 4


def test_friend_and_room_spammers_clearly_cross_a_threshold(small) -> None:
    pop, events = small
    kinds = {lb.account_id: lb.label for lb in pop.labels}
    adds, rooms = _by_account(events, "friend-adds"), _by_account(events, "room-creations")
    for account, kind in kinds.items():
        if kind == "friend_spammer":
            times = [v["ts"] for v in adds[account]]
            assert _max_in_window(times, 600_000) >= 35 or _max_in_window(times, DAY_MS) >= 110
        if kind == "room_spammer":
            opened = [v["ts"] for v in rooms[account] if v["room_type"] == "open"]
            assert (_max_in_window(opened, 3_600_000) >= 6
                    or _max_in_window([v["ts"] for v in rooms[account]], DAY_MS) >= 24)


def _reporters_devices(events) -> dict[str, set[str]]:
    devices: dict[str, set[str]] = defaultdict(set)
    for t, v in events:
        if t == "device-signals":
            devices[v["account_id"]].add(v["device_id"])
    return devices


def test_spammers_get_at_least_thirteen_distinct_reporters_on_distinct_devices(small) -> None:
    pop, events = small
    devices = _reporters_devices(events)
    spammers = {lb.account_id for lb in pop.labels if lb.label == "spammer"}
    reports: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t, v in events:
        if t == "message-reports" and v["reported_id"] in spammers:
            reports[v["reported_id"]].append(v)
    for spammer in spammers:
        reporters = {v["reporter_id"] for v in reports[spammer]}
        assert len(reporters) >= 13  # 13 x 0.5 = 6.5 >= 5.0
        seen = [d for r in reporters for d in devices[r]]
        assert len(seen) == len(set(seen)), "flood reporters must not share devices"
        spammy = sum(v["reason"] in ("spam", "gambling", "obscene") for v in reports[spammer])
        assert spammy >= 0.8 * len(reports[spammer])


def test_brigades_stay_at_or_under_three_points_with_the_spec_weighting(small) -> None:
    """Brute force: ≤3 per room per 10 min, one vote per device group, 0.5 per fresh reporter."""
    pop, events = small
    devices = _reporters_devices(events)
    targets = {lb.account_id for lb in pop.labels if lb.label == "brigade_target"}
    reports: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t, v in events:
        if t == "message-reports" and v["reported_id"] in targets:
            reports[v["reported_id"]].append(v)
    for target in targets:
        counted: list[dict[str, Any]] = []
        for v in sorted(reports[target], key=lambda r: r["ts"]):
            same_room = [c for c in counted if v.get("room_id") and c.get("room_id") == v["room_id"]
                         and v["ts"] - c["ts"] < 600_000]
            if len(same_room) < 3:
                counted.append(v)
        groups: list[set[str]] = []
        for v in counted:
            mine = set(devices[v["reporter_id"]]) or {v["reporter_id"]}
            joined = [g for g in groups if g & mine]
            for g in joined:
                groups.remove(g)
                mine |= g
            groups.append(mine)
        assert 0.5 * len(groups) <= 3.0
        assert 0.5 * len({v["reporter_id"] for v in reports[target]}) >= 6.0  # unweighted: a flood


def test_tainted_and_evader_accounts_use_a_device_of_their_source(small) -> None:
    pop, events = small
    kinds = {lb.account_id: lb.label for lb in pop.labels}
    users: dict[str, set[str]] = defaultdict(set)
    for t, v in events:
        if t == "device-signals":
            users[v["device_id"]].add(kinds[v["account_id"]])
    shared = {frozenset(k) for k in users.values() if len(k) > 1}
    assert frozenset({"tainted", "spammer"}) in shared
    assert frozenset({"evader", "repeat_offender"}) in shared
    allowed = ({"tainted", "spammer"}, {"evader", "repeat_offender"}, {"brigader"})
    assert all(any(k <= a for a in allowed) for k in shared)


def test_mix_is_configurable_and_validated() -> None:
    counts = simulate.kind_counts(1000, {"friend_spammer": 0.05})
    assert counts["friend_spammer"] == 50 and counts["normal"] == 950
    assert sum(counts.values()) == 1000
    assert simulate.kind_counts(1000, {"brigader": 0.05})["brigader"] == 0  # no one to brigade
    with pytest.raises(ValueError, match="unknown kinds"):
        simulate.kind_counts(1000, {"bot": 0.1})
    with pytest.raises(ValueError, match="days"):
        simulate.plan(accounts=500, events=10_000, seed=0, days=2)
    with pytest.raises(ValueError, match="events"):
        simulate.plan(accounts=2000, events=100, seed=0)


def test_cli_writes_events_labels_and_a_summary(tmp_path, capsys) -> None:
    parser = argparse.ArgumentParser()
    simulate.add_arguments(parser)
    out, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    args = parser.parse_args(["--accounts", "400", "--events", "8000", "--seed", "5",
                              "--out", str(out), "--labels", str(labels)])
    assert simulate.run(args) == 0
    lines = out.read_bytes().splitlines()
    assert len(lines) == 8000
    first = orjson.loads(lines[0])
    assert set(first) == {"topic", "value"} and first["topic"] in simulate.TOPICS
    assert len(labels.read_bytes().splitlines()) == 400
    err = capsys.readouterr().err
    assert "8000 events" in err and "400 accounts" in err and "normal" in err
