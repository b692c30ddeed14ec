"""Which account partitions read ahead of the others in event time (Flink's watermark
alignment, for the partitions one worker reads).

A device-stage request waits until every account partition's frontier has passed it
(streams/device_stage.py). Catching up on a backlog, the consumer reads each partition
by offset, not event time, and a partition with fewer events per hour runs ahead: in
bench/perf.py's stage D (500,000 events over 4 partitions, one worker) the frontiers
were up to 14 hours of event time apart, and 6,290 requests waited the full
WARDEN_HOP_WAIT_MS (10 s) and were answered before the slowest partition had passed
them, unlike replay. A partition more than `max_ahead_ms` ahead of the slowest one here
stops reading its input topics until it is within half of that: the slowest partition
never waits, so catching up always moves.
"""

from __future__ import annotations

from collections.abc import Mapping, Set


def partitions_ahead(frontiers: Mapping[int, int | None], ahead: Set[int], *,
                     max_ahead_ms: int) -> set[int]:
    """The partitions to hold back now, given each partition's frontier (None: caught up,
    it holds nothing back and runs) and those held back so far."""
    bounded = {p: f for p, f in frontiers.items() if f is not None}
    if max_ahead_ms <= 0 or len(bounded) < 2:
        return set()
    low = min(bounded.values())
    return {p for p, f in bounded.items()
            if f - low > (max_ahead_ms // 2 if p in ahead else max_ahead_ms)}
