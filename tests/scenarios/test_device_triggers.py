"""SPEC trigger table, `tainted_device` and `ban_evasion`, and "Fine points" on device triggers.

Both look at *other* accounts that used the device: `alice` is the abusive
account whose phone `bob` (a new account) signs in on.
"""

from story import DAY, HOUR, SECOND, Story, days, decision, hours, minutes

TAINT_SCOPES = ["add_friend", "join_open_chat"]
EMULATOR_SCOPES = ["add_friend", "create_room", "join_open_chat"]


def flood(story: Story, account: str, *, at: int, reasons: list[str]) -> list:
    """One report per reason, each from a fresh reporter, ending at `at`."""
    n = len(reasons)
    return [story.report(f"{account}-reporter{i}", account, at=at - (n - 1 - i) * SECOND,
                         reason=reason) for i, reason in enumerate(reasons)]


def burst(story: Story, account: str, *, at: int, tag: str) -> list:
    """30 distinct friend adds ending at `at`: one friend_add_burst firing (scope add_friend)."""
    return [story.friend_add(account, f"{tag}f{i}", at=at - (29 - i) * SECOND) for i in range(30)]


def spammer_on_phone(story: Story, *, at: int, reasons: list[str] | None = None) -> None:
    """alice signs in on alice-phone, then a report flood restricts her."""
    story.given(story.device("alice", "alice-phone", at=at))
    story.given(*flood(story, "alice", at=at + 10 * 60 * SECOND, reasons=reasons or ["spam"] * 10))
    assert story.status("alice") is not None


def restricted(account: str, *, at: int, scopes: list[str], triggers: list[str], level: int = 1,
               quiet_days: int = 14) -> dict:
    return decision(account, "restricted", at=at, scopes=scopes, triggers=triggers, level=level,
                    lift_at=at + quiet_days * DAY)


def evader_setup(story: Story) -> int:
    """alice on alice-phone, restricted once (auto-lifted), then at level 2; returns when."""
    story.given(story.device("alice", "alice-phone", at=days(0)))
    story.given(*burst(story, "alice", at=hours(1), tag="a"))
    story.advance(hours(1) + 14 * DAY)
    assert [d.type for d in story.last] == ["lifted"]
    story.given(*burst(story, "alice", at=days(20), tag="b"))
    assert story.status("alice").level == 2
    return days(20)


# --- tainted_device -----------------------------------------------------------

def test_a_new_account_on_a_device_used_by_a_flooded_spammer_is_restricted_as_tainted():
    story = Story()
    spammer_on_phone(story, at=days(0))
    story.when(story.device("bob", "alice-phone", at=days(1)))
    story.then(restricted("bob", at=days(1), scopes=TAINT_SCOPES, triggers=["tainted_device"]))


def test_using_the_device_for_a_friend_add_counts_as_using_it():
    story = Story()
    spammer_on_phone(story, at=days(0))
    story.when(story.friend_add("bob", "carol", at=days(1), device="alice-phone"))
    story.then(restricted("bob", at=days(1), scopes=TAINT_SCOPES, triggers=["tainted_device"]))


def test_spam_gambling_and_obscene_together_make_a_majority():
    story = Story()
    spammer_on_phone(story, at=days(0), reasons=["spam", "spam", "gambling", "gambling", "obscene",
                                                 "obscene", "harassment", "harassment",
                                                 "harassment", "harassment"])
    story.when(story.device("bob", "alice-phone", at=days(1)))
    story.then(restricted("bob", at=days(1), scopes=TAINT_SCOPES, triggers=["tainted_device"]))


def test_mostly_is_by_weight_not_by_count():
    story = Story()
    vets = [f"vet{i}" for i in range(4)]  # upheld once each: credibility 2/3
    story.given(*[story.report(r, "old-spammer", at=days(0) + i * SECOND)
                  for i, r in enumerate(vets + [f"helper{i}" for i in range(6)])])
    story.given(story.device("alice", "alice-phone", at=days(1)))
    story.given(*[story.report(f"fresh{i}", "alice", at=days(1) + HOUR + i * SECOND,
                               reason="harassment") for i in range(5)],  # 5 x 0.5 = 2.5
                *[story.report(v, "alice", at=days(1) + 2 * HOUR + i * SECOND)
                  for i, v in enumerate(vets)])  # 4 x 2/3 = 2.67 of spam
    assert story.status("alice") is not None
    story.when(story.device("bob", "alice-phone", at=days(2)))
    story.then(restricted("bob", at=days(2), scopes=TAINT_SCOPES, triggers=["tainted_device"]))


def test_a_device_used_by_an_account_flooded_mostly_for_harassment_is_not_tainted():
    story = Story()
    spammer_on_phone(story, at=days(0), reasons=["harassment"] * 6 + ["spam"] * 4)
    story.when(story.device("bob", "alice-phone", at=days(1)))
    story.then()


def test_half_spam_is_not_mostly_spam():
    story = Story()
    spammer_on_phone(story, at=days(0), reasons=["harassment"] * 5 + ["spam"] * 5)
    story.when(story.device("bob", "alice-phone", at=days(1)))
    story.then()


def test_a_device_of_an_account_restricted_for_something_other_than_reports_is_not_tainted():
    story = Story()
    story.given(story.device("alice", "alice-phone", at=days(0)),
                *burst(story, "alice", at=days(0) + HOUR, tag=""))
    story.when(story.device("bob", "alice-phone", at=days(1)))
    story.then()  # alice is only level 1, and not flooded


def test_the_taint_lasts_while_the_spammers_use_is_within_180_days_even_after_her_lift():
    story = Story()
    spammer_on_phone(story, at=days(0))  # alice's use at day 0
    story.advance(days(170))
    assert story.status("alice") is None  # auto-lifted at day 14
    at = days(180) - 1
    story.when(story.device("bob", "alice-phone", at=at))
    story.then(restricted("bob", at=at, scopes=TAINT_SCOPES, triggers=["tainted_device"]))


def test_a_device_last_used_by_the_spammer_180_days_ago_is_no_longer_tainted():
    story = Story()
    spammer_on_phone(story, at=days(0))
    story.advance(days(170))
    story.when(story.device("bob", "alice-phone", at=days(180)))
    story.then()


def test_an_account_does_not_taint_its_own_device():
    story = Story()
    spammer_on_phone(story, at=days(0))
    story.advance(days(15))  # alice's restriction lifts
    story.when(story.device("alice", "alice-phone", at=days(16)))
    story.then()


def test_an_overturned_flood_does_not_taint_the_device():
    story = Story()
    spammer_on_phone(story, at=days(0))
    story.given(story.command("alice", "mark_false_positive", at=days(0) + HOUR))
    story.when(story.device("bob", "alice-phone", at=days(1)))
    story.then()


def test_a_flood_overturned_on_appeal_does_not_taint_the_device():
    story = Story()
    spammer_on_phone(story, at=days(0))
    story.given(story.command("alice", "appeal_filed", at=days(0) + HOUR, actor="alice"),
                story.command("alice", "appeal_decided", at=days(0) + 2 * HOUR, granted=True))
    story.when(story.device("bob", "alice-phone", at=days(1)))
    story.then()


# --- ban_evasion --------------------------------------------------------------

def test_a_new_account_on_a_level_two_accounts_device_inherits_its_scopes_and_resets_its_clock():
    story = Story()
    evader_setup(story)
    story.when(story.device("bob", "alice-phone", at=days(21)))
    story.then(restricted("bob", at=days(21), scopes=["add_friend"], triggers=["ban_evasion"]),
               decision("alice", "extended", at=days(21), scopes=["add_friend"],
                        triggers=["ban_evasion"], level=2, lift_at=days(21) + 28 * DAY))


def test_no_ban_evasion_when_the_restricted_account_is_only_level_one():
    story = Story()
    story.given(story.device("alice", "alice-phone", at=days(0)),
                *burst(story, "alice", at=days(20), tag=""))
    assert story.status("alice").level == 1
    story.when(story.device("bob", "alice-phone", at=days(21)))
    story.then()


def test_no_ban_evasion_once_the_level_two_restriction_has_lifted():
    story = Story()
    at = evader_setup(story)
    story.advance(at + 28 * DAY)
    assert [d.type for d in story.last] == ["lifted"]
    story.when(story.device("bob", "alice-phone", at=at + 29 * DAY))
    story.then()


def test_an_account_does_not_evade_itself():
    story = Story()
    evader_setup(story)
    story.when(story.device("alice", "alice-phone", at=days(21)))
    story.then()


# --- several triggers on one event ------------------------------------------

def test_emulator_and_virtual_number_on_one_signal_give_one_decision_listing_both():
    story = Story()
    story.when(story.device("mallory", "pc", at=minutes(0), emulator=True, virtual_number=True))
    story.then(restricted("mallory", at=minutes(0), scopes=EMULATOR_SCOPES,
                          triggers=["emulator", "virtual_number"]))


def test_a_virtual_number_on_a_tainted_device_gives_one_decision_listing_both_triggers():
    story = Story()
    spammer_on_phone(story, at=days(0))
    story.when(story.device("bob", "alice-phone", at=days(1), virtual_number=True))
    story.then(restricted("bob", at=days(1), scopes=TAINT_SCOPES,
                          triggers=["tainted_device", "virtual_number"]))


def test_an_emulator_on_an_evaded_device_gives_one_decision_listing_both_triggers():
    story = Story()
    evader_setup(story)
    story.when(story.device("bob", "alice-phone", at=days(21), emulator=True))
    story.then(restricted("bob", at=days(21), scopes=EMULATOR_SCOPES,
                          triggers=["ban_evasion", "emulator"]),
               decision("alice", "extended", at=days(21), scopes=["add_friend"],
                        triggers=["ban_evasion"], level=2, lift_at=days(21) + 28 * DAY))


def test_a_spam_flood_during_another_restriction_still_taints_the_device():
    story = Story()
    story.given(story.device("alice", "alice-phone", at=days(0), emulator=True))
    story.given(*flood(story, "alice", at=days(0) + HOUR, reasons=["spam"] * 10))
    story.when(story.device("bob", "alice-phone", at=days(1)))
    story.then(restricted("bob", at=days(1), scopes=TAINT_SCOPES, triggers=["tainted_device"]))


def test_every_use_of_a_device_counts_even_minutes_after_the_previous_one():
    story = Story()
    story.given(story.device("alice", "alice-phone", at=days(0)))
    story.given(story.friend_add("bob", "carol", at=days(1), device="alice-phone"))  # untainted yet
    story.given(*flood(story, "alice", at=days(1) + 10 * 60 * SECOND, reasons=["spam"] * 10))
    at = days(1) + 20 * 60 * SECOND
    story.when(story.friend_add("bob", "dave", at=at, device="alice-phone"))
    story.then(restricted("bob", at=at, scopes=TAINT_SCOPES, triggers=["tainted_device"]))
