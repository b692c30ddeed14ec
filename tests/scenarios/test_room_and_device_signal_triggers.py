"""SPEC trigger table: `room_creation_burst`, `emulator` and `virtual_number`, as stories.

"Within W" follows detectors/windows.py: events exactly W apart are not within.
"""

from story import DAY, HOUR, Story, decision, minutes

ROOM_SCOPES = ["create_room", "join_open_chat"]
EMULATOR_SCOPES = ["add_friend", "create_room", "join_open_chat"]
VIRTUAL_NUMBER_SCOPES = ["join_open_chat"]


def rooms(story: Story, account: str, times: list[int], *, type: str, tag: str = "") -> list:
    return [story.room(account, f"{tag}{type}{i}", at=t, type=type) for i, t in enumerate(times)]


def restricted(account: str, *, at: int, scopes: list[str], triggers: list[str]) -> dict:
    return decision(account, "restricted", at=at, scopes=scopes, triggers=triggers, level=1,
                    lift_at=at + 14 * DAY)


# --- room_creation_burst: open rooms ----------------------------------------

def test_five_open_rooms_within_an_hour_restrict_room_creation_and_open_chats():
    story = Story()
    story.given(*rooms(story, "mallory", [minutes(m) for m in (0, 10, 20, 30)], type="open"))
    story.when(story.room("mallory", "open4", at=minutes(50), type="open"))
    story.then(restricted("mallory", at=minutes(50), scopes=ROOM_SCOPES,
                          triggers=["room_creation_burst"]))


def test_four_open_rooms_within_an_hour_do_not_fire():
    story = Story()
    story.when(*rooms(story, "alice", [minutes(m) for m in (0, 1, 2, 3)], type="open"))
    story.then()


def test_the_fifth_open_room_sixty_minutes_after_the_first_is_not_within_the_hour():
    story = Story()
    story.given(*rooms(story, "alice", [minutes(m) for m in (0, 10, 20, 30)], type="open"))
    story.when(story.room("alice", "open4", at=minutes(60), type="open"))
    story.then()


def test_the_fifth_open_room_one_millisecond_inside_the_hour_fires():
    story = Story()
    story.given(*rooms(story, "mallory", [minutes(m) for m in (0, 10, 20, 30)], type="open"))
    story.when(story.room("mallory", "open4", at=minutes(60) - 1, type="open"))
    story.then(restricted("mallory", at=minutes(60) - 1, scopes=ROOM_SCOPES,
                          triggers=["room_creation_burst"]))
    evidence = story.last[0].evidence["room_creation_burst"]
    assert (evidence["count"], evidence["threshold"], evidence["window_ms"]) == (5, 5, HOUR)


def test_group_rooms_do_not_count_toward_the_open_room_rule():
    story = Story()
    story.given(*rooms(story, "alice", [minutes(m) for m in (0, 1, 2, 3)], type="open"))
    story.when(*rooms(story, "alice", [minutes(m) for m in (4, 5, 6)], type="group"))
    story.then()


def test_recreating_the_same_open_room_counts_once():
    story = Story()
    story.given(*rooms(story, "alice", [minutes(m) for m in (0, 1, 2, 3)], type="open"))
    story.when(story.room("alice", "open0", at=minutes(4), type="open"))
    story.then()


# --- room_creation_burst: rooms of any type ---------------------------------

def test_twenty_rooms_of_any_type_within_a_day_fire():
    story = Story()
    times = [minutes(i * 70) for i in range(20)]  # never 5 open rooms in an hour
    story.given(*rooms(story, "mallory", times[:10], type="group"),
                *rooms(story, "mallory", times[10:19], type="open"))
    story.when(story.room("mallory", "last", at=times[19], type="group"))
    story.then(restricted("mallory", at=times[19], scopes=ROOM_SCOPES,
                          triggers=["room_creation_burst"]))
    evidence = story.last[0].evidence["room_creation_burst"]
    assert (evidence["count"], evidence["threshold"], evidence["window_ms"]) == (20, 20, DAY)


def test_nineteen_rooms_within_a_day_do_not_fire():
    story = Story()
    story.when(*rooms(story, "alice", [minutes(i * 70) for i in range(19)], type="group"))
    story.then()


def test_the_twentieth_room_a_full_day_after_the_first_is_not_within_the_day():
    story = Story()
    times = [minutes(0)] + [minutes(60 + i * 60) for i in range(18)]
    story.given(*rooms(story, "alice", times, type="group"))
    story.when(story.room("alice", "late", at=minutes(0) + DAY, type="group"))
    story.then()


def test_the_twentieth_room_one_millisecond_inside_the_day_fires():
    story = Story()
    times = [minutes(0)] + [minutes(60 + i * 60) for i in range(18)]
    story.given(*rooms(story, "mallory", times, type="group"))
    story.when(story.room("mallory", "late", at=minutes(0) + DAY - 1, type="group"))
    story.then(restricted("mallory", at=minutes(0) + DAY - 1, scopes=ROOM_SCOPES,
                          triggers=["room_creation_burst"]))


# --- emulator -------------------------------------------------------------------

def test_a_device_signal_from_an_emulator_restricts_open_chats_friends_and_rooms():
    story = Story()
    story.when(story.device("mallory", "pc-1", at=minutes(0), emulator=True))
    story.then(restricted("mallory", at=minutes(0), scopes=EMULATOR_SCOPES, triggers=["emulator"]))


def test_a_device_signal_without_emulator_or_with_emulator_false_does_not_fire():
    story = Story()
    story.when(story.device("alice", "phone-1", at=minutes(0), emulator=False),
               story.device("alice", "phone-1", at=minutes(1)))
    story.then()


# --- virtual_number -------------------------------------------------------------

def test_a_virtual_number_restricts_open_chats():
    story = Story()
    story.when(story.device("mallory", "phone-1", at=minutes(0), virtual_number=True))
    story.then(restricted("mallory", at=minutes(0), scopes=VIRTUAL_NUMBER_SCOPES,
                          triggers=["virtual_number"]))


def test_an_overseas_number_the_carrier_cannot_verify_restricts_open_chats():
    story = Story()
    story.when(story.device("mallory", "phone-1", at=minutes(0), phone_country="US",
                            carrier_verified=False))
    story.then(restricted("mallory", at=minutes(0), scopes=VIRTUAL_NUMBER_SCOPES,
                          triggers=["virtual_number"]))


def test_an_unverified_home_country_number_does_not_fire():
    story = Story()
    story.when(story.device("alice", "phone-1", at=minutes(0), phone_country="KR",
                            carrier_verified=False))
    story.then()


def test_a_verified_overseas_number_does_not_fire():
    story = Story()
    story.when(story.device("alice", "phone-1", at=minutes(0), phone_country="US",
                            carrier_verified=True, virtual_number=False))
    story.then()


def test_the_home_country_comes_from_the_policy():
    story = Story({"home_country": "JP"})
    story.when(story.device("alice", "phone-1", at=minutes(0), phone_country="JP",
                            carrier_verified=False))
    story.then()
    story.when(story.device("bob", "phone-2", at=minutes(1), phone_country="KR",
                            carrier_verified=False))
    story.then(restricted("bob", at=minutes(1), scopes=VIRTUAL_NUMBER_SCOPES,
                          triggers=["virtual_number"]))


def test_a_sustained_open_room_burst_extends_once_lift_at_has_moved_an_hour():
    story = Story()
    story.given(*rooms(story, "mallory", [minutes(m) for m in (0, 10, 20, 30, 40)], type="open"))
    story.when(*rooms(story, "mallory", [minutes(m) for m in (50, 60, 70, 80, 90)], type="open",
                      tag="more"))
    story.then()  # still over the threshold, but lift_at moved < 1 h: absorbed
    story.when(story.room("mallory", "more-last", at=minutes(100), type="open"))
    story.then(decision("mallory", "extended", at=minutes(100), scopes=ROOM_SCOPES,
                        triggers=["room_creation_burst"], level=1,
                        lift_at=minutes(100) + 14 * DAY))
