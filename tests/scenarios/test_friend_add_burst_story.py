"""SPEC trigger table, `friend_add_burst`, as stories."""

from story import DAY, MINUTE, Story, decision, minutes


def test_thirty_distinct_friends_in_ten_minutes_restrict_add_friend():
    story = Story()
    story.given(*[story.friend_add("mallory", f"f{i}", at=minutes(i * 0.3)) for i in range(29)])
    story.when(story.friend_add("mallory", "f29", at=minutes(9)))
    story.then(decision("mallory", "restricted", at=minutes(9), scopes=["add_friend"],
                        triggers=["friend_add_burst"], level=1, lift_at=minutes(9) + 14 * DAY))


def test_twenty_nine_friends_or_a_repeated_friend_do_not_fire():
    story = Story()
    story.given(*[story.friend_add("alice", f"f{i}", at=minutes(i * 0.3)) for i in range(28)])
    story.when(story.friend_add("alice", "f0", at=minutes(9)),
               story.friend_add("alice", "f28", at=minutes(9.1)))
    story.then()


def test_window_is_half_open_ten_minutes_apart_is_not_within():
    story = Story()
    story.given(*[story.friend_add("alice", f"f{i}", at=minutes(0) + i * 1000) for i in range(29)])
    story.when(story.friend_add("alice", "f29", at=minutes(10)))  # f0 is exactly 10 min older
    story.then()


def test_window_edge_one_millisecond_inside_fires():
    story = Story()
    story.given(*[story.friend_add("alice", f"f{i}", at=minutes(0) + i * 1000) for i in range(29)])
    story.when(story.friend_add("alice", "f29", at=minutes(10) - 1))
    assert [d.type for d in story.last] == ["restricted"]
    assert story.last[0].evidence["friend_add_burst"]["count"] == 30


def test_late_event_completing_an_earlier_burst_fires():
    story = Story()
    story.given(*[story.friend_add("mallory", f"f{i}", at=minutes(i * 0.2)) for i in range(29)])
    story.given(story.friend_add("mallory", "other", at=minutes(60)))
    story.when(story.friend_add("mallory", "late", at=minutes(3)))
    assert [d.triggers for d in story.last] == [("friend_add_burst",)]


def test_a_hundred_friends_in_a_day_fire_the_long_window():
    story = Story()
    story.given(*[story.friend_add("carol", f"f{i}", at=minutes(i * 14)) for i in range(99)])
    story.when(story.friend_add("carol", "f99", at=minutes(99 * 14)))
    [d] = story.last
    assert d.type == "restricted"
    assert d.evidence["friend_add_burst"]["threshold"] == 100
    assert d.evidence["friend_add_burst"]["window_ms"] == DAY
