"""Decisions: the facts appended to `account-decisions` (SPEC "Decision format").

A `Decision` is frozen; `to_json` gives the exact bytes on the log, with a fixed
key order so replaying the same input yields byte-identical output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors.values import fast_init

DECISION_TYPES = (
    "restricted", "extended", "lifted", "appeal_received", "appeal_rejected",
    "appeal_denied", "reporter_penalized",
)


@fast_init
@dataclass(frozen=True, slots=True)
class Decision:
    account_id: str
    seq: int
    type: str
    at: int
    scopes: tuple[str, ...]
    triggers: tuple[str, ...]
    level: int
    lift_at: int | None
    reason: str | None
    actor: str | None
    evidence: dict[str, Any]
    policy_version: str
    appeal_allowed_at: int | None = None
    # Not published: what the account aggregate needs to fold this decision.
    taints: bool = field(default=False, compare=False)

    @property
    def decision_id(self) -> str:
        return f"{self.account_id}:{self.seq}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "decision_id": self.decision_id,
            "account_id": self.account_id,
            "seq": self.seq,
            "type": self.type,
            "at": self.at,
            "scopes": list(self.scopes),
            "triggers": list(self.triggers),
            "level": self.level,
            "lift_at": self.lift_at,
            "reason": self.reason,
            "actor": self.actor,
            "evidence": self.evidence,
            "policy_version": self.policy_version,
        }
        if self.appeal_allowed_at is not None:
            out["appeal_allowed_at"] = self.appeal_allowed_at
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())
