"""SPEC "Restriction lifecycle", one story per rule."""

from story import DAY, HOUR, MINUTE, Story, decision, days, minutes

BURST_SCOPES = ["add_friend"]


def burst(story: Story, account: str, *, at: int, tag: str = "") -> list:
    """30 distinct friend adds ending at `at`: one friend_add_burst firing."""
    return [story.friend_add(account, f"{tag}f{i}", at=at - (29 - i) * 1000) for i in range(30)]


def emulator(story: Story, account: str, *, at: int) -> object:
    return story.device(account, f"{account}-pc", at=at, emulator=True)


def test_first_restriction_is_level_one_and_lifts_after_fourteen_quiet_days():
    story = Story()
    story.given(*burst(story, "mallory", at=minutes(5)))
    assert story.status("mallory").lift_at == minutes(5) + 14 * DAY
    story.advance(minutes(5) + 14 * DAY)
    story.then(decision("mallory", "lifted", at=minutes(5) + 14 * DAY, level=1, reason="auto_quiet"))


def test_each_repeat_offence_doubles_the_quiet_period():
    story = Story()
    at = minutes(0)
    expected_quiet = [14 * DAY, 28 * DAY, 56 * DAY]
    for level, quiet in enumerate(expected_quiet, start=1):
        story.when(emulator(story, "mallory", at=at))
        story.then(decision("mallory", "restricted", at=at, scopes=["add_friend", "create_room",
                            "join_open_chat"], triggers=["emulator"], level=level, lift_at=at + quiet))
        story.advance(at + quiet)
        assert [d.type for d in story.last] == ["lifted"]
        at += quiet + DAY


def test_after_the_third_restriction_the_fourth_is_indefinite():
    story = Story()
    at = minutes(0)
    for quiet in (14 * DAY, 28 * DAY, 56 * DAY):
        story.given(emulator(story, "mallory", at=at))
        story.advance(at + quiet)
        at += quiet + DAY
    story.when(emulator(story, "mallory", at=at))
    story.then(decision("mallory", "restricted", at=at, scopes=["add_friend", "create_room",
                        "join_open_chat"], triggers=["emulator"], level=4, lift_at=None))
    story.advance(at + 1000 * DAY)
    story.then()


def test_restrictions_older_than_a_year_no_longer_raise_the_level():
    story = Story()
    story.given(emulator(story, "mallory", at=days(0)))
    story.advance(days(14))
    story.when(emulator(story, "mallory", at=days(366)))
    assert story.last[0].level == 1


def test_a_trigger_firing_again_restarts_the_quiet_clock_and_is_recorded_as_extended():
    story = Story()
    story.given(emulator(story, "mallory", at=minutes(0)))
    story.when(emulator(story, "mallory", at=days(3)))
    story.then(decision("mallory", "extended", at=days(3), scopes=["add_friend", "create_room",
                        "join_open_chat"], triggers=["emulator"], level=1, lift_at=days(17)))


def test_lift_at_moves_smaller_than_an_hour_are_absorbed():
    story = Story()
    story.given(emulator(story, "mallory", at=minutes(0)))
    story.when(emulator(story, "mallory", at=minutes(59)))
    story.then()
    assert story.status("mallory").lift_at == minutes(0) + 14 * DAY  # the logged one
    story.when(emulator(story, "mallory", at=minutes(60)))
    assert [d.lift_at for d in story.last] == [minutes(60) + 14 * DAY]


def test_a_sustained_burst_extends_at_most_once_per_extend_step():
    story = Story()
    events = [story.friend_add("mallory", f"f{i}", at=minutes(i * 0.1)) for i in range(1200)]
    story.given(*events)  # 30 adds per 3 minutes, for two hours
    types = [d.type for d in story.all]
    assert types[0] == "restricted"
    assert 1 <= types.count("extended") <= 2


def test_a_new_trigger_during_a_restriction_grows_the_scopes():
    story = Story()
    story.given(*burst(story, "mallory", at=minutes(5)))
    story.when(emulator(story, "mallory", at=minutes(10)))
    [d] = story.last
    assert (d.type, d.scopes, d.triggers) == (
        "extended", ("add_friend", "create_room", "join_open_chat"), ("emulator",))
    assert d.lift_at == minutes(10) + 14 * DAY


def test_lifts_due_together_fire_in_lift_at_then_account_order_before_the_moving_event():
    story = Story()
    story.given(emulator(story, "bob", at=minutes(0)), emulator(story, "alice", at=minutes(0)),
                emulator(story, "carol", at=minutes(-1)))
    story.when(story.friend_add("dave", "x", at=minutes(0) + 15 * DAY))
    assert [(d.account_id, d.type) for d in story.last] == [
        ("carol", "lifted"), ("alice", "lifted"), ("bob", "lifted")]


def test_appeal_is_received_once_per_restriction_and_a_second_is_a_duplicate():
    story = Story()
    story.given(*burst(story, "mallory", at=minutes(5)))
    lift_at = minutes(5) + 14 * DAY
    story.when(story.command("mallory", "appeal_filed", at=minutes(10), actor="mallory"))
    story.then(decision("mallory", "appeal_received", at=minutes(10), scopes=BURST_SCOPES, level=1,
                        lift_at=lift_at, actor="mallory"))
    story.when(story.command("mallory", "appeal_filed", at=minutes(11), actor="mallory"))
    story.then(decision("mallory", "appeal_rejected", at=minutes(11), scopes=BURST_SCOPES, level=1,
                        lift_at=lift_at, reason="duplicate", actor="mallory"))


def test_appeal_on_an_unrestricted_account_is_rejected_not_restricted():
    story = Story()
    story.when(story.command("alice", "appeal_filed", at=minutes(1), actor="alice"))
    story.then(decision("alice", "appeal_rejected", at=minutes(1), reason="not_restricted",
                        actor="alice"))


def test_early_appeal_on_an_indefinite_restriction_is_refused_with_the_date_it_becomes_possible():
    story = Story()
    story.when(story.command("mallory", "restrict", at=days(1), scopes=["create_room"]))
    story.when(story.command("mallory", "appeal_filed", at=days(2), actor="mallory"))
    story.then(decision("mallory", "appeal_rejected", at=days(2), scopes=["create_room"], level=1,
                        lift_at=None, reason="cooldown", actor="mallory",
                        appeal_allowed_at=days(91)))
    story.when(story.command("mallory", "appeal_filed", at=days(91), actor="mallory"))
    assert [d.type for d in story.last] == ["appeal_received"]


def test_granted_appeal_lifts_and_does_not_count_toward_later_levels():
    story = Story()
    story.given(emulator(story, "mallory", at=days(0)),
                story.command("mallory", "appeal_filed", at=days(1), actor="mallory"))
    story.when(story.command("mallory", "appeal_decided", at=days(2), granted=True))
    story.then(decision("mallory", "lifted", at=days(2), level=1, reason="appeal_granted",
                        actor="op-1"))
    story.when(emulator(story, "mallory", at=days(3)))
    assert story.last[0].level == 1


def test_denied_appeal_keeps_the_restriction():
    story = Story()
    story.given(emulator(story, "mallory", at=days(0)),
                story.command("mallory", "appeal_filed", at=days(1), actor="mallory"))
    story.when(story.command("mallory", "appeal_decided", at=days(2), granted=False))
    [d] = story.last
    assert (d.type, d.lift_at, d.actor) == ("appeal_denied", days(14), "op-1")
    assert story.status("mallory") is not None


def test_false_positive_lifts_and_does_not_count_toward_later_levels():
    story = Story()
    story.given(emulator(story, "alice", at=days(0)))
    story.when(story.command("alice", "mark_false_positive", at=days(1)))
    story.then(decision("alice", "lifted", at=days(1), level=1, reason="false_positive",
                        actor="op-1"))
    story.when(emulator(story, "alice", at=days(2)))
    assert story.last[0].level == 1


def test_manual_restrict_and_lift_are_decisions_with_the_actor():
    story = Story()
    story.when(story.command("eve", "restrict", at=days(1), scopes=["report", "create_room"],
                             duration_ms=2 * DAY, actor="op-7"))
    story.then(decision("eve", "restricted", at=days(1), scopes=["create_room", "report"], level=1,
                        lift_at=days(3), reason="manual", actor="op-7"))
    story.when(story.command("eve", "lift", at=days(2), actor="op-8"))
    story.then(decision("eve", "lifted", at=days(2), level=1, reason="manual", actor="op-8"))


def test_manual_lift_is_not_an_overturn_so_it_still_counts_toward_levels():
    story = Story()
    story.given(emulator(story, "eve", at=days(0)), story.command("eve", "lift", at=days(1)))
    story.when(emulator(story, "eve", at=days(2)))
    assert story.last[0].level == 2


def test_commands_that_cannot_apply_are_rejected_not_dropped():
    story = Story()
    story.when(story.command("alice", "lift", at=days(1)),
               story.command("alice", "mark_false_positive", at=days(1)),
               story.command("alice", "appeal_decided", at=days(1), granted=True))
    story.then()
    assert [r.code for r in story.rejected] == ["command_not_applicable"] * 3


def test_appeal_decided_without_a_pending_appeal_is_rejected():
    story = Story()
    story.given(emulator(story, "mallory", at=days(0)))
    story.when(story.command("mallory", "appeal_decided", at=days(1), granted=True))
    story.then()
    assert story.rejected[-1].detail == "appeal_decided: no appeal is pending"


def test_seq_increases_by_one_per_account_and_decision_id_is_account_and_seq():
    story = Story()
    story.given(*burst(story, "mallory", at=minutes(5)),
                story.command("mallory", "appeal_filed", at=minutes(6)),
                story.command("mallory", "appeal_filed", at=minutes(7)))
    story.advance(days(30))
    mine = [d for d in story.all if d.account_id == "mallory"]
    assert [d.seq for d in mine] == [1, 2, 3, 4]
    assert [d.decision_id for d in mine][-1] == "mallory:4"


def test_repeated_event_ids_within_seven_days_are_ignored():
    story = Story()
    first = story.friend_add("mallory", "f1", at=minutes(0))
    story.given(*burst(story, "mallory", at=minutes(5)))
    story.given(first)
    story.when(first)
    story.then()
    assert story.engine.dedupe.seen[first.event_id] == minutes(5)


def test_every_decision_explains_itself():
    story = Story()
    story.given(*burst(story, "mallory", at=minutes(5)))
    [d] = story.all
    evidence = d.evidence["friend_add_burst"]
    assert evidence["count"] == 30 and evidence["threshold"] == 30
    assert evidence["window_ms"] == 10 * MINUTE
    assert len(evidence["sample_event_ids"]) == 5
    assert d.policy_version == story.policy.version


def test_extension_step_comes_from_the_policy():
    story = Story({"lifecycle": {"extend_step_ms": 2 * HOUR}})
    story.given(emulator(story, "mallory", at=minutes(0)))
    story.when(emulator(story, "mallory", at=minutes(90)))
    story.then()
