"""Topic names (SPEC "Topics").

The spec's names are the defaults; `WARDEN_TOPIC_PREFIX` prefixes every one
(several Warden deployments or test runs on one cluster), and internal topics
also carry the app id.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from detectors.events import TOPICS as INPUT_TOPICS

DECISIONS = "account-decisions"
DEAD_LETTERS = "dead-letters"


@dataclass(frozen=True)
class TopicNames:
    """Names are worked out once per instance (`cached_property`): the stages read them for
    every record and every lift check."""

    prefix: str = ""
    app_id: str = "warden"

    def input(self, canonical: str) -> str:
        return f"{self.prefix}{canonical}"

    @cached_property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.input(t) for t in INPUT_TOPICS)

    @cached_property
    def decisions(self) -> str:
        return f"{self.prefix}{DECISIONS}"

    @cached_property
    def dead_letters(self) -> str:
        return f"{self.prefix}{DEAD_LETTERS}"

    @cached_property
    def account_inbox(self) -> str:
        """Messages for the account stage from other keys (reports, feedback, matches, ticks)."""
        return f"{self.prefix}{self.app_id}-account-inbox"

    @cached_property
    def device_inbox(self) -> str:
        """Device uses and account status changes, keyed by device id."""
        return f"{self.prefix}{self.app_id}-device-inbox"

    @cached_property
    def account_sources(self) -> tuple[str, ...]:
        """Everything the account stage consumes: co-partitioned, one partition count."""
        return (*self.inputs, self.account_inbox)

    @cached_property
    def all(self) -> tuple[str, ...]:
        return (*self.account_sources, self.device_inbox, self.decisions, self.dead_letters)

    def canonical(self, topic: str) -> str:
        """The spec's name of an input topic (what the decoder dispatches on)."""
        return topic[len(self.prefix):] if self.prefix and topic.startswith(self.prefix) else topic
