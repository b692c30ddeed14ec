"""SPEC "Report weighting" (and the `report_flood` row of the trigger table), one story per rule.

A fresh reporter weighs 0.5, so ten of them reach the 5.0 threshold; every
other rule is told as a change to that baseline.
"""

from story import DAY, HOUR, MINUTE, SECOND, Story, days, decision, hours, minutes

FLOOD_SCOPES = ["join_open_chat", "send_open_chat_message"]
HAIR_TRIGGER = {"report_flood": {"threshold": 0.05}}  # one report of any weight is a flood


def names(tag: str, n: int) -> list[str]:
    return [f"{tag}{i}" for i in range(n)]


def reports(story: Story, reporters: list[str], reported: str, *, at: int, reason: str = "spam",
            room: str | None = None, step: int = SECOND) -> list:
    """One report from each reporter about `reported`, `step` apart, starting at `at`."""
    return [story.report(r, reported, at=at + i * step, reason=reason, room=room)
            for i, r in enumerate(reporters)]


def own_devices(story: Story, accounts: list[str], *, at: int) -> list:
    """Each account signs in on a phone of its own."""
    return [story.device(a, f"{a}-phone", at=at) for a in accounts]


def shared_device(story: Story, accounts: list[str], device: str, *, at: int) -> list:
    return [story.device(a, device, at=at) for a in accounts]


def restricted_by_reports(account: str, *, at: int, level: int = 1) -> dict:
    return decision(account, "restricted", at=at, scopes=FLOOD_SCOPES, triggers=["report_flood"],
                    level=level, lift_at=at + 14 * DAY)


def upheld_overturned(story: Story, reporter: str) -> tuple[int, int]:
    record = story.reporter(reporter)
    return record.upheld, record.overturned


def credibility(story: Story, reporter: str) -> float:
    upheld, overturned = upheld_overturned(story, reporter)
    return (upheld + 1) / (upheld + overturned + 2)


def veterans(story: Story, tag: str, n: int, *, at: int) -> list[str]:
    """`n` reporters whose one report each was upheld in an earlier flood (credibility 2/3)."""
    who = names(tag, n)
    helpers = names(f"{tag}-helper", max(0, 10 - n))
    story.given(*reports(story, who + helpers, f"{tag}-spammer", at=at))
    assert story.status(f"{tag}-spammer") is not None
    return who


# --- the threshold ----------------------------------------------------------

def test_ten_fresh_reporters_on_distinct_devices_restrict_open_chat_use():
    story = Story()
    crowd = names("r", 10)
    story.given(*own_devices(story, crowd, at=minutes(0)))
    story.given(*reports(story, crowd[:9], "spammer", at=minutes(1)))
    story.when(story.report(crowd[9], "spammer", at=minutes(2)))
    story.then(restricted_by_reports("spammer", at=minutes(2)))


def test_nine_fresh_reporters_do_not_reach_the_threshold():
    story = Story()
    crowd = names("r", 9)
    story.given(*own_devices(story, crowd, at=minutes(0)))
    story.when(*reports(story, crowd, "alice", at=minutes(1)))
    story.then()
    assert story.status("alice") is None


def test_report_flood_evidence_shows_score_threshold_window_and_each_reporters_contribution():
    story = Story()
    crowd = names("r", 10)
    story.given(*own_devices(story, crowd, at=minutes(0)))
    story.when(*reports(story, crowd, "spammer", at=minutes(1)))
    [d] = story.last
    evidence = d.evidence["report_flood"]
    assert evidence["score"] == 5.0
    assert evidence["threshold"] == 5.0
    assert evidence["window_ms"] == DAY
    contributions = {c["reporter_id"]: c["weight"] for c in evidence["contributions"]}
    assert contributions == dict.fromkeys(crowd, 0.5)
    assert evidence["sample_event_ids"]


# --- credibility --------------------------------------------------------------

def test_reporters_whose_reports_were_upheld_weigh_more_so_eight_of_them_suffice():
    story = Story()
    vets = veterans(story, "vet", 8, at=hours(0))
    assert [credibility(story, v) for v in vets] == [2 / 3] * 8
    story.when(*reports(story, vets[:7], "spammer2", at=hours(1)))
    story.then()  # 7 x 2/3 = 4.67
    story.when(story.report(vets[7], "spammer2", at=hours(2)))
    story.then(restricted_by_reports("spammer2", at=hours(2)))  # 8 x 2/3 = 5.33


def test_reporters_whose_reports_were_overturned_weigh_less():
    story = Story()
    crowd = names("r", 10)
    story.given(*reports(story, crowd, "innocent", at=hours(0)))
    story.given(story.command("innocent", "mark_false_positive", at=hours(1)))
    assert [credibility(story, r) for r in crowd] == [1 / 3] * 10
    story.when(*reports(story, crowd, "target", at=hours(2)))
    story.then()  # 10 x 1/3 = 3.33
    story.when(*reports(story, names("fresh", 3), "target", at=hours(3)))
    story.then()  # + 1.5 = 4.83
    story.when(story.report("fresh3", "target", at=hours(4)))
    story.then(restricted_by_reports("target", at=hours(4)))  # + 0.5 = 5.33


def test_a_currently_restricted_reporter_weighs_nothing():
    story = Story()
    story.given(story.command("r0", "restrict", at=hours(0), scopes=["add_friend"],
                              duration_ms=10 * DAY))
    story.when(*reports(story, names("r", 10), "alice", at=hours(1)))
    story.then()  # r0 adds 0: 4.5
    story.when(story.report("r10", "alice", at=hours(2)))
    story.then(restricted_by_reports("alice", at=hours(2)))


def test_a_reporter_weighs_again_once_its_restriction_is_lifted():
    story = Story()
    story.given(story.command("r0", "restrict", at=hours(0), scopes=["add_friend"],
                              duration_ms=10 * DAY),
                story.command("r0", "lift", at=hours(1)))
    story.given(*reports(story, names("r", 9), "spammer", at=hours(2)))
    story.when(story.report("r9", "spammer", at=hours(3)))
    story.then(restricted_by_reports("spammer", at=hours(3)))


def test_a_reporter_at_strike_two_weighs_nothing_for_thirty_days_then_weighs_again():
    story = Story(HAIR_TRIGGER)
    for k in range(6):  # six reports by troll, each restricting its target, each overturned
        story.given(story.report("troll", f"victim{k}", at=days(k)),
                    story.command(f"victim{k}", "mark_false_positive", at=days(k) + MINUTE))
    assert story.reporter("troll").strike == 2
    muted_from = days(5) + MINUTE
    story.when(story.report("troll", "alice", at=muted_from + 29 * DAY))
    story.then()
    story.when(story.report("troll", "bob", at=muted_from + 31 * DAY))
    story.then(restricted_by_reports("bob", at=muted_from + 31 * DAY))  # weight 1/8 again


# --- once per reporter, per device group, per room ----------------------------

def test_each_reporter_counts_once_per_reported_account_per_day():
    story = Story()
    story.given(*[story.report("r0", "alice", at=hours(h)) for h in (0, 1, 2)])
    story.given(*reports(story, names("other", 8), "alice", at=hours(3)))
    story.when(story.report("r0", "alice", at=hours(23)))
    story.then()  # r0 once + 8 others = 4.5
    assert story.status("alice") is None


def test_a_reporter_counts_again_once_a_day_has_passed():
    story = Story()
    story.given(story.report("r0", "alice", at=hours(0)))
    story.given(*reports(story, names("other", 9), "alice", at=hours(24)))  # r0's report aged out
    story.when(story.report("r0", "alice", at=hours(24) + MINUTE))
    story.then(restricted_by_reports("alice", at=hours(24) + MINUTE))


def test_a_brigade_of_thirty_accounts_on_two_devices_cannot_restrict_an_innocent():
    story = Story()
    farm_a, farm_b = names("a", 15), names("b", 15)
    story.given(*shared_device(story, farm_a, "farm-phone-1", at=minutes(0)),
                *shared_device(story, farm_b, "farm-phone-2", at=minutes(0)))
    story.when(*reports(story, farm_a + farm_b, "innocent", at=minutes(5)))
    story.then()
    assert story.status("innocent") is None


def test_a_device_group_adds_exactly_one_weight():
    story = Story()
    farm = names("farm", 15)
    story.given(*shared_device(story, farm, "farm-phone", at=minutes(0)))
    story.given(*reports(story, farm, "spammer", at=minutes(1)))  # 0.5
    story.given(*reports(story, names("r", 8), "spammer", at=minutes(2)))  # + 4.0
    story.when(story.report("r8", "spammer", at=minutes(3)))
    story.then(restricted_by_reports("spammer", at=minutes(3)))


def test_reporters_sharing_a_device_contribute_the_groups_highest_weight():
    story = Story()
    [vet] = veterans(story, "vet", 1, at=hours(0))  # credibility 2/3
    story.given(*shared_device(story, ["newbie", vet], "shared-phone", at=hours(1)))
    story.given(story.report("newbie", "spammer", at=hours(2)),
                story.report(vet, "spammer", at=hours(2) + SECOND))
    story.when(*reports(story, names("r", 8), "spammer", at=hours(3)))
    story.then()  # 2/3 + 4.0 = 4.67: the group is not 0.5 + 2/3
    story.when(story.report("r8", "spammer", at=hours(4)))
    story.then(restricted_by_reports("spammer", at=hours(4)))
    assert story.last[0].evidence["report_flood"]["score"] == round(4.5 + 2 / 3, 6)


def test_at_most_three_reports_from_one_room_within_ten_minutes_count():
    story = Story()
    story.when(*reports(story, names("r", 10), "alice", at=minutes(0), room="lobby",
                        step=30 * SECOND))
    story.then()  # only 3 x 0.5 count
    story.when(*reports(story, names("s", 6), "alice", at=minutes(6)))
    story.then()  # 1.5 + 3.0 = 4.5


def test_reports_from_a_room_count_again_ten_minutes_later():
    story = Story()
    story.given(*reports(story, names("r", 3), "spammer", at=minutes(0), room="lobby"))
    story.given(*reports(story, names("s", 6), "spammer", at=minutes(1)))
    story.given(story.report("r3", "spammer", at=minutes(5), room="lobby"))  # 4th in 10 min
    assert story.status("spammer") is None
    story.when(story.report("r4", "spammer", at=minutes(10) + 3 * SECOND, room="lobby"))
    story.then(restricted_by_reports("spammer", at=minutes(10) + 3 * SECOND))


def test_a_reports_weight_is_fixed_when_it_arrives():
    story = Story()
    crowd = names("r", 9)
    story.given(*reports(story, crowd, "spammer", at=hours(0)))  # 9 x 0.5 = 4.5, fixed
    story.given(*reports(story, [*crowd, "w"], "innocent", at=hours(1)),
                story.command("innocent", "mark_false_positive", at=hours(2)))
    assert credibility(story, "r0") == 1 / 3  # later reports by r0 would weigh 1/3
    story.when(story.report("z", "spammer", at=hours(3)))
    story.then(restricted_by_reports("spammer", at=hours(3)))  # 4.5 + 0.5, not 3.0 + 0.5


# --- upheld and overturned ----------------------------------------------------

def test_reports_that_contribute_to_a_restriction_are_upheld():
    story = Story()
    crowd = names("r", 10)
    story.when(*reports(story, crowd, "spammer", at=hours(0)))
    assert [upheld_overturned(story, r) for r in crowd] == [(1, 0)] * 10


def test_a_report_that_did_not_count_is_not_upheld():
    story = Story()
    story.given(story.report("r0", "spammer", at=hours(0)),
                story.report("r0", "spammer", at=hours(1)))  # counted once
    story.when(*reports(story, names("other", 9), "spammer", at=hours(2)))
    assert [d.type for d in story.last] == ["restricted"]
    assert upheld_overturned(story, "r0") == (1, 0)


def test_reports_become_overturned_when_their_restriction_is_lifted_as_false_positive():
    story = Story()
    crowd = names("r", 10)
    story.given(*reports(story, crowd, "innocent", at=hours(0)))
    story.when(story.command("innocent", "mark_false_positive", at=hours(1)))
    story.then(decision("innocent", "lifted", at=hours(1), level=1, reason="false_positive",
                        actor="op-1"))
    assert [upheld_overturned(story, r) for r in crowd] == [(0, 1)] * 10
    assert credibility(story, "r0") == 1 / 3


def test_reports_become_overturned_when_an_appeal_is_granted():
    story = Story()
    crowd = names("r", 10)
    story.given(*reports(story, crowd, "innocent", at=hours(0)),
                story.command("innocent", "appeal_filed", at=hours(1), actor="innocent"))
    story.when(story.command("innocent", "appeal_decided", at=hours(2), granted=True))
    story.then(decision("innocent", "lifted", at=hours(2), level=1, reason="appeal_granted",
                        actor="op-1"))
    assert [upheld_overturned(story, r) for r in crowd] == [(0, 1)] * 10


def test_reports_stay_upheld_when_the_restriction_lifts_by_itself_or_by_hand():
    story = Story()
    quiet, manual = names("q", 10), names("m", 10)
    story.given(*reports(story, quiet, "spammer1", at=hours(0)),
                *reports(story, manual, "spammer2", at=hours(0)),
                story.command("spammer2", "lift", at=hours(1)))
    story.advance(hours(0) + 15 * DAY)
    assert [(d.account_id, d.reason) for d in story.last] == [("spammer1", "auto_quiet")]
    assert [upheld_overturned(story, r) for r in quiet + manual] == [(1, 0)] * 20


def test_reports_overturned_by_a_false_positive_do_not_restrict_the_account_again():
    story = Story()
    story.given(*reports(story, names("r", 10), "innocent", at=hours(0)),
                story.command("innocent", "mark_false_positive", at=hours(1)))
    story.when(story.report("latecomer", "innocent", at=hours(2)))
    story.then()  # 0.5 of fresh weight; the overturned 5.0 must not count against innocent


# --- the quiet clock ----------------------------------------------------------

def test_a_report_adding_weight_during_a_restriction_restarts_the_quiet_clock():
    story = Story()
    story.given(*reports(story, names("r", 10), "spammer", at=hours(0)))
    first = hours(0) + 9 * SECOND
    assert story.status("spammer").lift_at == first + 14 * DAY
    story.when(story.report("late1", "spammer", at=first + 30 * MINUTE))
    story.then()  # lift_at would move 30 min: absorbed
    story.when(story.report("late2", "spammer", at=first + 2 * HOUR))
    story.then(decision("spammer", "extended", at=first + 2 * HOUR, scopes=FLOOD_SCOPES,
                        triggers=["report_flood"], level=1, lift_at=first + 2 * HOUR + 14 * DAY))


def test_a_report_adding_weight_restarts_the_clock_of_a_restriction_by_another_trigger():
    story = Story()
    story.given(*[story.friend_add("mallory", f"f{i}", at=minutes(0) + i * SECOND)
                  for i in range(30)])
    restricted_at = minutes(0) + 29 * SECOND
    assert story.status("mallory").lift_at == restricted_at + 14 * DAY
    story.when(story.report("r0", "mallory", at=hours(3)))
    story.then(decision("mallory", "extended", at=hours(3), scopes=["add_friend"],
                        triggers=["report_flood"], level=1, lift_at=hours(3) + 14 * DAY))


def test_a_report_adding_no_weight_does_not_restart_the_clock():
    story = Story()
    crowd = names("r", 10)
    story.given(*reports(story, crowd, "spammer", at=hours(0)))
    story.when(story.report("r0", "spammer", at=hours(3)))  # r0 already counted today
    story.then()
    assert story.status("spammer").lift_at == hours(0) + 9 * SECOND + 14 * DAY


def test_a_late_report_completing_a_flood_within_a_day_fires():
    story = Story()
    story.given(*reports(story, names("r", 9), "spammer", at=hours(2)))  # 4.5 at hours 2..
    story.given(story.friend_add("someone", "else", at=hours(5)))  # the clock moves on
    story.when(story.report("late", "spammer", at=hours(1)))  # filed at 1h, delivered late
    assert [(d.type, d.triggers) for d in story.last] == [("restricted", ("report_flood",))]
