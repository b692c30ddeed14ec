"""streams/pacing.py: a partition far ahead of the slowest one in event time waits for it."""

from __future__ import annotations

from streams.pacing import partitions_ahead

HOUR = 3_600_000


def test_a_partition_more_than_max_ahead_of_the_slowest_is_held_back():
    frontiers = {0: 14 * HOUR, 1: 0, 2: HOUR // 2, 3: 2 * HOUR}
    assert partitions_ahead(frontiers, set(), max_ahead_ms=HOUR) == {0, 3}


def test_a_held_partition_resumes_once_within_half_of_max_ahead():
    held = {0}
    assert partitions_ahead({0: 2 * HOUR, 1: HOUR}, held, max_ahead_ms=HOUR) == {0}
    assert partitions_ahead({0: 2 * HOUR, 1: 3 * HOUR // 2}, held, max_ahead_ms=HOUR) == set()


def test_the_slowest_partition_and_caught_up_ones_are_never_held():
    assert partitions_ahead({0: 5 * HOUR, 1: None, 2: None}, {0}, max_ahead_ms=HOUR) == set()
    assert partitions_ahead({0: 5 * HOUR, 1: 0, 2: None}, set(), max_ahead_ms=HOUR) == {0}


def test_zero_turns_it_off():
    assert partitions_ahead({0: 5 * HOUR, 1: 0}, set(), max_ahead_ms=0) == set()
