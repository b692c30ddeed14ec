"""Evidence helpers shared by the window triggers."""

from __future__ import annotations

from typing import Any

from detectors.windows import Window, within

SAMPLE_SIZE = 5


def window_evidence(window: Window, end_ms: int, window_ms: int, threshold: int) -> dict[str, Any]:
    """Counts vs threshold, and a sample of the event ids that made the count."""
    members = within(window, end_ms, window_ms)
    return {
        "count": len(members),
        "window_ms": window_ms,
        "threshold": threshold,
        "window_end": end_ms,
        "sample_event_ids": [e.event_id for e in members[:SAMPLE_SIZE]],
    }
