"""detectors.windows: exact counts, bounded memory, edges."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.windows import EMPTY, Entry, add, count_ending_at, densest_covering, prune

W = 600_000


def fold(adds, *, horizon=W, keep=1000):
    window = EMPTY
    now = 0
    for ts, item in adds:
        now = max(now, ts)
        window = add(window, Entry(ts, item, f"e{ts}{item}"), horizon_ms=horizon, keep=keep, now_ms=now)
    return window


@pytest.mark.parametrize(("adds", "end", "expected"), [
    ([(0, "a")], 0, 1),
    ([(0, "a"), (W - 1, "b")], W - 1, 2),      # W-1 apart: within
    ([(0, "a"), (W, "b")], W, 1),              # exactly W apart: not within
    ([(0, "a"), (10, "a")], 10, 1),            # same item counts once
    ([(10, "a"), (0, "a")], 10, 1),            # a late older sighting keeps the newer
    ([(5, "a"), (1, "b"), (3, "c")], 5, 3),    # out of order, sorted
])
def test_count_ending_at_edges(adds, end, expected):
    assert count_ending_at(fold(adds), end, W) == expected


def test_keep_bounds_memory_without_changing_threshold_answers():
    window = fold([(i, f"f{i}") for i in range(500)], keep=30)
    assert len(window) == 30
    assert count_ending_at(window, 499, W) >= 30


def test_prune_drops_entries_past_the_horizon():
    window = fold([(0, "a"), (W, "b")], horizon=2 * W)
    assert [e.item for e in prune(window, horizon_ms=W, now_ms=W)] == ["b"]


def test_densest_covering_finds_a_burst_completed_by_a_late_event():
    window = fold([*((100 + i, f"f{i}") for i in range(4)), (10 * W, "z"), (50, "late")], horizon=20 * W)
    assert densest_covering(window, 50, W) == (5, 103)


def brute_force_max_covering(adds, ts, window_ms):
    latest = {}
    for t, item in adds:
        latest[item] = max(latest.get(item, t), t)
    times = sorted(latest.values())
    best = 0
    for end in [ts, *[t for t in times if ts <= t < ts + window_ms]]:
        best = max(best, sum(1 for t in times if end - window_ms < t <= end))
    return best


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5 * W), st.sampled_from("abcdefghij")), min_size=1,
                max_size=40))
def test_counts_equal_a_brute_force_count(adds):
    window = fold(adds, horizon=100 * W)
    for ts, _ in adds:
        # latest sighting per item is what the window keeps
        assert densest_covering(window, ts, W)[0] == brute_force_max_covering(adds, ts, W)
    end = max(t for t, _ in adds)
    latest = {}
    for t, item in adds:
        latest[item] = max(latest.get(item, t), t)
    assert count_ending_at(window, end, W) == sum(1 for t in latest.values() if end - W < t <= end)
