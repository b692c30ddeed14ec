"""Given/when/then for Warden scenarios: event builders with readable times.

    story = Story()
    story.given(*[story.friend_add("mallory", f"f{i}", at=minutes(i / 10)) for i in range(29)])
    story.when(story.friend_add("mallory", "f29", at=minutes(3)))
    story.then(restricted("mallory", at=minutes(3), triggers=["friend_add_burst"], ...))

`then` compares the decisions the `when` step produced, whole, on the fields
that define behaviour (evidence is checked separately where it matters).
"""

from __future__ import annotations

import itertools
from typing import Any

from detectors.config import DEFAULT_POLICY, Policy, policy_from_mapping
from detectors.decisions import Decision
from detectors.engine import Engine
from detectors.events import (
    DeviceSignalled,
    Event,
    FriendAdded,
    MessageReported,
    ModerationCommanded,
    RoomCreated,
)

T0 = 1767225600000  # 2026-01-01T00:00:00Z
SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def minutes(n: float) -> int:
    return T0 + int(n * MINUTE)


def hours(n: float) -> int:
    return T0 + int(n * HOUR)


def days(n: float) -> int:
    return T0 + int(n * DAY)


FIELDS = ("account_id", "type", "at", "scopes", "triggers", "level", "lift_at", "reason", "actor")


def view(d: Decision) -> dict[str, Any]:
    """The behaviour-defining fields of a decision, for whole comparison."""
    out = {k: getattr(d, k) for k in FIELDS}
    out["scopes"], out["triggers"] = list(d.scopes), list(d.triggers)
    if d.appeal_allowed_at is not None:
        out["appeal_allowed_at"] = d.appeal_allowed_at
    return out


def decision(account_id: str, type_: str, *, at: int, scopes: list[str] | None = None,
             triggers: list[str] | None = None, level: int = 0, lift_at: int | None = None,
             reason: str | None = None, actor: str | None = None, **extra: Any) -> dict[str, Any]:
    out = {"account_id": account_id, "type": type_, "at": at, "scopes": sorted(scopes or []),
           "triggers": sorted(triggers or []), "level": level, "lift_at": lift_at,
           "reason": reason, "actor": actor}
    out.update(extra)
    return out


class Story:
    def __init__(self, policy: Policy | dict[str, Any] | None = None) -> None:
        if isinstance(policy, dict):
            policy = policy_from_mapping(policy)
        self.policy = policy or DEFAULT_POLICY
        self.engine = Engine(self.policy)
        self._ids = itertools.count(1)
        self.last: list[Decision] = []
        self.all: list[Decision] = []
        self.rejected: list[Any] = []

    # --- event builders -------------------------------------------------
    def _id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    def friend_add(self, account: str, friend: str, *, at: int, device: str | None = None) -> FriendAdded:
        return FriendAdded(self._id("fa"), at, account, friend, device)

    def room(self, account: str, room: str, *, at: int, type: str = "group",
             device: str | None = None) -> RoomCreated:
        return RoomCreated(self._id("rc"), at, account, room, type, device)

    def report(self, reporter: str, reported: str, *, at: int, reason: str = "spam",
               target: str = "message", room: str | None = None) -> MessageReported:
        return MessageReported(self._id("mr"), at, reporter, reported, target, reason, room)

    def device(self, account: str, device: str, *, at: int, **fields: Any) -> DeviceSignalled:
        return DeviceSignalled(self._id("ds"), at, account, device, **fields)

    def command(self, account: str, action: str, *, at: int, actor: str = "op-1",
                **fields: Any) -> ModerationCommanded:
        if "scopes" in fields and fields["scopes"] is not None:
            fields["scopes"] = tuple(sorted(fields["scopes"]))
        return ModerationCommanded(self._id("cmd"), at, account, actor, action, **fields)

    # --- steps ----------------------------------------------------------
    def given(self, *events: Event) -> Story:
        self._feed(events)
        return self

    def when(self, *events: Event) -> Story:
        self.last = self._feed(events)
        return self

    def advance(self, until: int) -> Story:
        """The clock reaches `until` with no input (`replay --until`)."""
        self.last = self.engine.advance(until)
        self.all.extend(self.last)
        return self

    def then(self, *expected: dict[str, Any]) -> Story:
        assert [view(d) for d in self.last] == list(expected)
        return self

    def _feed(self, events: tuple[Event, ...]) -> list[Decision]:
        out: list[Decision] = []
        for event in events:
            result = self.engine.process(event)
            out.extend(result.decisions)
            if result.rejected is not None:
                self.rejected.append(result.rejected)
        self.all.extend(out)
        return out

    # --- inspection -----------------------------------------------------
    def status(self, account: str) -> Any:
        state = self.engine.accounts.get(account)
        return None if state is None else state.lifecycle.restriction

    def reporter(self, account: str) -> Any:
        state = self.engine.accounts.get(account)
        return None if state is None else state.reporter
