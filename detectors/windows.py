"""Exact, memory-bounded sliding windows over event time.

A window is a tuple of `Entry(ts, item, event_id)` sorted by `ts`, holding at
most one entry per distinct `item` (its latest sighting). Two events are
"within `window_ms`" when their times differ by less than `window_ms`, so the
window ending at `t` is the half-open interval `(t - window_ms, t]`.

Exactness with a bound: "≥ N distinct items within W" holds at `t` iff the
N-th most recent distinct item is within W of `t`, so keeping only the newest
`keep` (≥ every threshold) entries never changes an answer. Late events are
inserted in order and checked against every window that covers them, so a
burst straddling a fixed bucket boundary is never missed.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from operator import itemgetter
from typing import NamedTuple


class Entry(NamedTuple):
    ts: int
    item: str
    event_id: str


Window = tuple[Entry, ...]
EMPTY: Window = ()


def add(window: Window, entry: Entry, *, horizon_ms: int, keep: int, now_ms: int) -> Window:
    """Record `entry`, dropping its item's older sighting, expired and surplus entries.

    `horizon_ms` is the longest window the caller asks about; entries not
    within it of `now_ms` can never count again.
    """
    item = entry.item
    if item in map(_item, window):  # a re-sighting (rare): keep the later one
        index = list(map(_item, window)).index(item)
        if window[index].ts >= entry.ts:
            return prune(window, horizon_ms=horizon_ms, now_ms=now_ms)
        entries = list(window)
        del entries[index]
    elif not window or window[-1].ts <= entry.ts:  # a new item in order (most adds)
        appended = (*window, entry)
        if appended[0].ts > now_ms - horizon_ms and len(appended) <= keep:
            return appended  # what _bounded returns when nothing is expired or surplus
        return _bounded(appended, horizon_ms=horizon_ms, keep=keep, now_ms=now_ms)
    else:
        entries = list(window)
    if not entries or entries[-1].ts <= entry.ts:
        entries.append(entry)
    else:
        insort(entries, entry)
    return _bounded(tuple(entries), horizon_ms=horizon_ms, keep=keep, now_ms=now_ms)


def _bounded(entries: Window, *, horizon_ms: int, keep: int, now_ms: int) -> Window:
    """Drop the expired head of a non-empty window, and entries beyond the newest `keep`."""
    cutoff = now_ms - horizon_ms
    start = 0 if entries[0].ts > cutoff else bisect_right(entries, cutoff, key=_ts)
    return entries[max(start, len(entries) - keep):]


def stream_time(window: Window, ts: int) -> int:
    """The newest event time this window has seen, counting `ts`.

    Windows prune against their own stream time, not the partition clock, so
    a topic consumed behind the others cannot evict evidence that is still
    inside the window for its own events (the clock only ages idle state).
    """
    return max(ts, window[-1].ts) if window else ts


def prune(window: Window, *, horizon_ms: int, now_ms: int) -> Window:
    """Drop entries that can no longer be within `horizon_ms` of any future time."""
    if not window or window[0].ts > now_ms - horizon_ms:
        return window
    return window[bisect_right(window, now_ms - horizon_ms, key=_ts):]


def count_ending_at(window: Window, end_ms: int, window_ms: int) -> int:
    """Distinct items in `(end_ms - window_ms, end_ms]`."""
    lo = bisect_right(window, end_ms - window_ms, key=_ts)
    hi = bisect_right(window, end_ms, key=_ts)
    return hi - lo


def densest_covering(window: Window, ts: int, window_ms: int) -> tuple[int, int]:
    """Largest count of any window of length `window_ms` that contains `ts`.

    Returns `(count, end_ms)` of the densest such window. For an in-order
    event (the newest entry) this is simply the window ending at `ts`.
    """
    if not window or window[-1].ts <= ts:
        return count_ending_at(window, ts, window_ms), ts
    # Candidate windows end at each entry time in [ts, ts + window_ms).
    best, best_end = 0, ts
    first = bisect_left(window, ts, key=_ts)
    last = bisect_left(window, ts + window_ms, key=_ts)
    ends = [ts, *(e.ts for e in window[first:last])]
    for end in ends:
        count = count_ending_at(window, end, window_ms)
        if count > best:
            best, best_end = count, end
    return best, best_end


def within(window: Window, end_ms: int, window_ms: int) -> Window:
    """The entries of the window ending at `end_ms`."""
    lo = bisect_right(window, end_ms - window_ms, key=_ts)
    hi = bisect_right(window, end_ms, key=_ts)
    return window[lo:hi]


# C-speed keys (Entry.ts and Entry.item are fields 0 and 1): used on every event.
_ts = itemgetter(0)
_item = itemgetter(1)
