"""Decisions in plain words (streams/explain.py): one row per trigger's evidence shape."""

from __future__ import annotations

import pytest

from detectors.config import DEFAULT_POLICY
from detectors.engine import Engine
from detectors.events import decode_object
from streams import simulate
from streams.explain import describe, duration, evidence_line, when

T0 = 1767225600000  # 2026-01-01 00:00 UTC
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
COMMAND_EVIDENCE = ("manual", "appeal", "false_positive")  # operator notes: shown as fields


@pytest.mark.parametrize(("ms", "text"), [
    (T0, "2026-01-01 00:00 UTC"),
    (T0 + 14 * DAY + 90 * MIN, "2026-01-15 01:30 UTC"),
    (None, "never (indefinite)"),
])
def test_when_reads_as_a_utc_minute(ms, text):
    assert when(ms) == text


@pytest.mark.parametrize(("ms", "text"), [
    (10 * MIN, "10 min"), (90 * MIN, "90 min"), (HOUR, "1 h"), (6 * HOUR, "6 h"),
    (DAY, "1 d"), (180 * DAY, "180 d"),
])
def test_duration_picks_the_largest_whole_unit(ms, text):
    assert duration(ms) == text


EVIDENCE = [
    ("friend_add_burst",
     {"count": 35, "window_ms": 10 * MIN, "threshold": 30, "window_end": T0,
      "sample_event_ids": ["e1", "e2"]},
     "35 distinct friends within 10 min (threshold 30)"),
    ("friend_add_burst",
     {"count": 101, "window_ms": DAY, "threshold": 100, "window_end": T0, "sample_event_ids": []},
     "101 distinct friends within 1 d (threshold 100)"),
    ("room_creation_burst",
     {"room_type": "open", "count": 6, "window_ms": HOUR, "threshold": 5, "window_end": T0,
      "sample_event_ids": ["r1"]},
     "6 open rooms within 1 h (threshold 5)"),
    ("room_creation_burst",
     {"room_type": None, "count": 21, "window_ms": DAY, "threshold": 20, "window_end": T0,
      "sample_event_ids": ["r1"]},
     "21 rooms within 1 d (threshold 20)"),
    ("report_flood",
     {"score": 5.5, "threshold": 5.0, "window_ms": DAY, "count": 12, "reporter_groups": 11,
      "weighted_reasons": {"gambling": 1.5, "spam": 4.0}, "taints": True,
      "contributions": [{"reporter_id": "r1", "weight": 0.5, "reason": "spam", "event_id": "m1"}],
      "sample_event_ids": ["m1"]},
     "weighted report score 5.5 within 1 d (threshold 5) from 11 reporter groups; "
     "gambling 1.5, spam 4"),
    ("emulator",
     {"device_id": "dev-9", "emulator": True, "sample_event_ids": ["s1"]},
     "signed in from a PC emulator (device dev-9)"),
    ("virtual_number",
     {"device_id": "dev-9", "virtual_number": True, "phone_country": "KR", "home_country": "KR",
      "carrier_verified": True, "sample_event_ids": ["s1"]},
     "virtual phone number"),
    ("virtual_number",
     {"device_id": "dev-9", "virtual_number": None, "phone_country": "US", "home_country": "KR",
      "carrier_verified": False, "sample_event_ids": ["s1"]},
     "phone number from US (home KR) the carrier could not verify"),
    ("tainted_device",
     {"device_id": "dev-3", "other_accounts": ["a1", "a2", "a3", "a4"], "horizon_ms": 180 * DAY,
      "sample_event_ids": ["f1"]},
     "device dev-3 was used by flooded spammer(s) a1, a2, a3"),
    ("ban_evasion",
     {"device_id": "dev-4", "other_accounts": ["a7"], "evaded_levels": [2],
      "sample_event_ids": ["f2"]},
     "uses device dev-4 of restricted account(s) a7"),
    ("ban_evasion",
     {"device_id": "dev-4", "evaded_by": "a8", "sample_event_ids": ["f3"]},
     "a8 used this account's device dev-4 (evasion)"),
    ("reporter_penalty",
     {"strike": 2, "overturned_in_horizon": 6},
     "strike 2: 6 overturned reports in 90 days"),
    ("auto_quiet",
     {"restricted_at": T0, "last_signal_at": T0 + HOUR, "quiet_ms": 14 * DAY},
     "nothing unusual since 2026-01-01 01:00 UTC"),
]


@pytest.mark.parametrize(("trigger", "evidence", "text"), EVIDENCE,
                         ids=[f"{t}-{i}" for i, (t, _, _) in enumerate(EVIDENCE)])
def test_evidence_line_puts_each_trigger_in_words(trigger, evidence, text):
    assert evidence_line(trigger, evidence) == text


def test_evidence_of_commands_falls_back_to_its_fields_without_sample_ids():
    assert evidence_line("manual", {"duration_ms": 3600000, "note": "spam wave"}) == (
        "duration_ms=3600000, note=spam wave")
    assert evidence_line("appeal", {"granted": True, "sample_event_ids": ["x"]}) == "granted=True"


def _decision(**fields):
    base = {"decision_id": "acct-42:7", "account_id": "acct-42", "seq": 7, "type": "restricted",
            "at": T0, "scopes": ["add_friend"], "triggers": ["friend_add_burst"], "level": 1,
            "lift_at": T0 + 14 * DAY, "reason": None, "actor": None,
            "evidence": {"friend_add_burst": EVIDENCE[0][1]}, "policy_version": "3f9c2a1b"}
    return {**base, **fields}


def test_describe_a_restriction_with_level_scopes_lift_and_evidence():
    assert describe(_decision()) == (
        "#7 2026-01-01 00:00 UTC  restricted  level 1  scopes add_friend  "
        "lifts 2026-01-15 00:00 UTC\n"
        "    friend_add_burst: 35 distinct friends within 10 min (threshold 30)")


def test_describe_an_indefinite_manual_restriction_names_the_actor():
    text = describe(_decision(type="restricted", scopes=["add_friend", "report"], triggers=[],
                              level=4, lift_at=None, reason="manual", actor="op-1",
                              evidence={"manual": {"duration_ms": None}}))
    assert text.splitlines()[0] == (
        "#7 2026-01-01 00:00 UTC  restricted  level 4  scopes add_friend,report  "
        "lifts never (indefinite)  (manual)  by op-1")


def test_describe_an_automatic_lift_gives_the_reason_and_the_quiet_since():
    text = describe(_decision(type="lifted", seq=8, scopes=[], triggers=[], lift_at=None,
                              reason="auto_quiet",
                              evidence={"auto_quiet": EVIDENCE[-1][1]}))
    assert text == ("#8 2026-01-01 00:00 UTC  lifted  (auto_quiet)\n"
                    "    auto_quiet: nothing unusual since 2026-01-01 01:00 UTC")


def test_describe_a_cooldown_rejection_says_when_an_appeal_becomes_possible():
    text = describe(_decision(type="appeal_rejected", reason="cooldown", actor="user",
                              evidence={}, appeal_allowed_at=T0 + 90 * DAY))
    assert text == ("#7 2026-01-01 00:00 UTC  appeal_rejected  (cooldown)  by user  "
                    "appeal possible from 2026-04-01 00:00 UTC")


def test_describe_ignores_evidence_that_is_not_an_object():
    assert describe(_decision(evidence={"friend_add_burst": "odd"})).count("\n") == 0


def test_every_trigger_the_engine_emits_is_put_in_words():
    """Drift check: real decisions from a simulated workload; no trigger falls back to k=v."""
    engine = Engine(DEFAULT_POLICY)
    seen = set()
    for topic, value in simulate.generate(accounts=400, events=8000, seed=11, days=4):
        for d in engine.process(decode_object(topic, value)).decisions:  # type: ignore[arg-type]
            decision = d.to_dict()
            for trigger, ev in decision["evidence"].items():
                line = evidence_line(trigger, ev)
                if trigger not in COMMAND_EVIDENCE:
                    assert line and "=" not in line, (trigger, line)
                seen.add(trigger)
            assert describe(decision).startswith(f"#{decision['seq']} ")
    assert {"friend_add_burst", "room_creation_burst", "report_flood", "emulator",
            "virtual_number", "tainted_device", "ban_evasion"} <= seen
