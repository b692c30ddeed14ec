"""Topic names (SPEC "Topics"); internal topics carry the app id as prefix."""

from __future__ import annotations

from detectors.events import TOPICS as INPUT_TOPICS

DECISIONS = "account-decisions"
DEAD_LETTERS = "dead-letters"


def account_inbox(app_id: str) -> str:
    """Messages for the account stage from other keys (reports, feedback, device matches, ticks)."""
    return f"{app_id}-account-inbox"


def device_inbox(app_id: str) -> str:
    """Device uses and account status changes, keyed by device id."""
    return f"{app_id}-device-inbox"


def account_sources(app_id: str) -> tuple[str, ...]:
    """Everything the account stage consumes: co-partitioned, one partition count."""
    return (*INPUT_TOPICS, account_inbox(app_id))


def all_topics(app_id: str) -> tuple[str, ...]:
    return (*account_sources(app_id), device_inbox(app_id), DECISIONS, DEAD_LETTERS)


__all__ = ["DEAD_LETTERS", "DECISIONS", "INPUT_TOPICS", "account_inbox", "account_sources",
           "all_topics", "device_inbox"]
