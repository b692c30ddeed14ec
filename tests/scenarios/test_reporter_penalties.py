"""SPEC "Reporter penalties": overturned reports earn strikes, at 3, 6, 9 ... within 90 days.

Most stories use a hair-trigger threshold, so that one report from the troll
restricts its target and one `mark_false_positive` overturns exactly that
report; the first story builds the same history from realistic floods.
"""

from story import DAY, HOUR, MINUTE, SECOND, Story, days, decision

HAIR_TRIGGER = {"report_flood": {"threshold": 0.05}}
FLOOD_SCOPES = ["join_open_chat", "send_open_chat_message"]


def false_flood(story: Story, troll: str, victim: str, *, at: int) -> object:
    """The troll and ten fresh helpers flood `victim`; returns the false-positive mark."""
    helpers = [f"{victim}-helper{i}" for i in range(10)]
    story.given(story.report(troll, victim, at=at),
                *[story.report(h, victim, at=at + (i + 1) * SECOND) for i, h in enumerate(helpers)])
    assert story.status(victim) is not None
    return story.command(victim, "mark_false_positive", at=at + HOUR)


def false_report(story: Story, troll: str, victim: str, *, at: int) -> object:
    """Hair trigger: the troll's report restricts `victim`; returns the overturning mark."""
    story.given(story.report(troll, victim, at=at))
    assert story.status(victim) is not None, f"{troll}'s report should have restricted {victim}"
    return story.command(victim, "mark_false_positive", at=at + MINUTE)


def overturn(story: Story, troll: str, victim: str, *, at: int) -> None:
    story.given(false_report(story, troll, victim, at=at))


def lifted_as_false_positive(victim: str, *, at: int) -> dict:
    return decision(victim, "lifted", at=at, level=1, reason="false_positive", actor="op-1")


def penalized(reporter: str, *, at: int) -> dict:
    return decision(reporter, "reporter_penalized", at=at, triggers=["reporter_penalty"])


def test_three_overturned_reports_earn_a_warning_strike():
    story = Story()
    story.given(false_flood(story, "troll", "victim0", at=days(0)))
    story.given(false_flood(story, "troll", "victim1", at=days(1)))
    mark = false_flood(story, "troll", "victim2", at=days(2))
    story.when(mark)
    story.then(lifted_as_false_positive("victim2", at=days(2) + HOUR),
               penalized("troll", at=days(2) + HOUR))
    assert story.reporter("troll").strike == 1


def test_two_overturned_reports_earn_no_strike():
    story = Story(HAIR_TRIGGER)
    overturn(story, "troll", "victim0", at=days(0))
    story.when(false_report(story, "troll", "victim1", at=days(1)))
    story.then(lifted_as_false_positive("victim1", at=days(1) + MINUTE))
    assert story.reporter("troll").strike == 0


def test_a_warned_reporter_keeps_its_weight():
    story = Story(HAIR_TRIGGER)
    for k in range(3):
        overturn(story, "troll", f"victim{k}", at=days(k))
    assert story.reporter("troll").strike == 1
    story.when(story.report("troll", "alice", at=days(3)))
    story.then(decision("alice", "restricted", at=days(3), scopes=FLOOD_SCOPES,
                        triggers=["report_flood"], level=1, lift_at=days(3) + 14 * DAY))
    contribution = story.last[0].evidence["report_flood"]["contributions"][0]
    assert contribution["weight"] == 0.2  # credibility 1/5, not zeroed by the warning


def test_six_overturned_reports_earn_strike_two_and_thirty_days_of_weightless_reports():
    story = Story(HAIR_TRIGGER)
    for k in range(5):
        overturn(story, "troll", f"victim{k}", at=days(k))
    story.when(false_report(story, "troll", "victim5", at=days(5)))
    muted_from = days(5) + MINUTE
    story.then(lifted_as_false_positive("victim5", at=muted_from),
               penalized("troll", at=muted_from))
    assert story.reporter("troll").strike == 2
    story.when(story.report("troll", "alice", at=muted_from + 29 * DAY))
    story.then()
    story.when(story.report("troll", "bob", at=muted_from + 31 * DAY))
    assert [(d.account_id, d.type) for d in story.last] == [("bob", "restricted")]


def test_nine_overturned_reports_earn_strike_three_which_bans_reporting_indefinitely():
    story = Story(HAIR_TRIGGER)
    for k in range(6):
        overturn(story, "troll", f"victim{k}", at=days(k))  # strike 2 at day 5: muted to day 35
    overturn(story, "troll", "victim6", at=days(36))
    overturn(story, "troll", "victim7", at=days(37))
    story.when(false_report(story, "troll", "victim8", at=days(38)))  # 9 within 90 days
    at = days(38) + MINUTE
    story.then(lifted_as_false_positive("victim8", at=at),
               penalized("troll", at=at),
               decision("troll", "restricted", at=at, scopes=["report"],
                        triggers=["reporter_penalty"], level=1, lift_at=None))
    story.advance(days(38) + 1000 * DAY)
    story.then()


def test_overturned_reports_older_than_ninety_days_do_not_count_toward_strikes():
    story = Story(HAIR_TRIGGER)
    overturn(story, "troll", "victim0", at=days(0))
    overturn(story, "troll", "victim1", at=days(1))
    story.when(false_report(story, "troll", "victim2", at=days(92)))
    story.then(lifted_as_false_positive("victim2", at=days(92) + MINUTE))
    assert story.reporter("troll").strike == 0


def test_overturned_reports_within_ninety_days_do_count_toward_strikes():
    story = Story(HAIR_TRIGGER)
    overturn(story, "troll", "victim0", at=days(0))
    overturn(story, "troll", "victim1", at=days(1))
    story.when(false_report(story, "troll", "victim2", at=days(89)))
    story.then(lifted_as_false_positive("victim2", at=days(89) + MINUTE),
               penalized("troll", at=days(89) + MINUTE))
