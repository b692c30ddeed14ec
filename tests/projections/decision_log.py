"""Decision builder for the projection tests (a plain module: conftest is not importable)."""

from __future__ import annotations

from collections import Counter
from typing import Any


class DecisionLog:
    """Builds decisions in SPEC's format with per-account seq, like the policy emits them."""

    def __init__(self) -> None:
        self.seq: Counter[str] = Counter()

    def __call__(
        self, account_id: str, type: str, *, at: int, scopes: tuple[str, ...] | list[str] = (),
        triggers: tuple[str, ...] | list[str] = (), level: int | None = 1,
        lift_at: int | None = None, reason: str | None = None, seq: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        if seq is None:
            self.seq[account_id] += 1
            seq = self.seq[account_id]
        return {
            "decision_id": f"{account_id}:{seq}", "account_id": account_id, "seq": seq,
            "type": type, "at": at, "scopes": list(scopes), "triggers": list(triggers),
            "level": level, "lift_at": lift_at, "reason": reason, "actor": None,
            "evidence": {t: {"count": 31, "sample_event_ids": ["e1"]} for t in triggers},
            "policy_version": "3f9c2a1b", **extra,
        }
