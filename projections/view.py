"""The read-model contract, the pure fold both views share, and the in-memory view.

Redis is a projection of `account-decisions` (SPEC "Redis read model"); `fold` is the one
definition of what a decision does to an account's status, so the Redis script, the in-memory
view and `rebuild`'s verification cannot drift apart (the contract tests run against both).

Most status fields are copied from the decision (`scopes` is already the full set after it).
Three fields carry over from the previous status; `transition(type)` says how:

    type                trigger mode   appeal op
    restricted          merge          keep
    extended            merge          keep
    lifted              keep           clear
    appeal_received     keep           set
    appeal_rejected     keep           keep
    appeal_denied       keep           clear
    reporter_penalized  keep           keep

- status is "restricted" iff the decision's scopes are non-empty; when "clear", triggers are
  empty, appeal_pending is false and since is null, whatever the type.
- triggers: on a newly restricted account, the decision's triggers; while it stays restricted,
  "merge" unions them in, "keep" leaves the restriction's triggers alone.
- appeal_pending: "set" -> true, "clear" -> false, "keep" -> the previous value while the
  account stays restricted (false on a newly restricted one).
- since: the `at` of the decision that started the current restriction.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

FEATURES = ("add_friend", "create_room", "join_open_chat", "send_open_chat_message", "report")
DECISION_TYPES = (
    "restricted", "extended", "lifted", "appeal_received", "appeal_rejected", "appeal_denied",
    "reporter_penalized",
)
DEFAULT_HISTORY_CAP = 50

ApplyResult = Literal["applied", "skipped"]
ActiveOrder = Literal["soonest_lift", "newest"]
ACTIVE_ORDERS = ("soonest_lift", "newest")
TriggerMode = Literal["merge", "keep"]
AppealOp = Literal["set", "clear", "keep"]
Decision = Mapping[str, Any]


class InvalidDecision(ValueError):
    """A decision that does not have SPEC's decision format: a producer bug, never skipped."""


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """An account's projected status after its latest applied decision."""

    account_id: str
    status: Literal["restricted", "clear"]
    scopes: tuple[str, ...]
    level: int | None
    lift_at_ms: int | None
    triggers: tuple[str, ...]
    seq: int
    type: str
    reason: str | None
    at_ms: int
    since_ms: int | None
    appeal_pending: bool
    appeal_allowed_at_ms: int | None

    @property
    def restricted(self) -> bool:
        return self.status == "restricted"

    def to_dict(self) -> dict[str, Any]:
        """Wire form (decision-format names: `lift_at`, `at`) for clients and the HTTP API."""
        return {
            "account_id": self.account_id, "status": self.status, "scopes": list(self.scopes),
            "level": self.level, "lift_at": self.lift_at_ms, "triggers": list(self.triggers),
            "seq": self.seq, "type": self.type, "reason": self.reason, "at": self.at_ms,
            "since": self.since_ms, "appeal_pending": self.appeal_pending,
            "appeal_allowed_at": self.appeal_allowed_at_ms,
        }


@dataclass(frozen=True, slots=True)
class ActiveEntry:
    """One row of the active-restrictions listing; `lift_at_ms` None means indefinite."""

    account_id: str
    lift_at_ms: int | None
    since_ms: int


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _str_list(value: object) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def check_decision(d: Decision) -> None:
    """Raise InvalidDecision unless `d` carries the fields the projection reads, well typed."""
    problems = []
    if not isinstance(d.get("account_id"), str):
        problems.append("account_id must be a string")
    if not _is_int(d.get("seq")) or d["seq"] < 0:
        problems.append("seq must be a non-negative integer")
    if d.get("type") not in DECISION_TYPES:
        problems.append(f"type must be one of {', '.join(DECISION_TYPES)}")
    if not _is_int(d.get("at")):
        problems.append("at must be an integer (ms)")
    if not _str_list(d.get("scopes")):
        problems.append("scopes must be a list of strings")
    if not _str_list(d.get("triggers", [])):
        problems.append("triggers must be a list of strings")
    for name in ("level", "lift_at", "appeal_allowed_at"):
        if d.get(name) is not None and not _is_int(d[name]):
            problems.append(f"{name} must be an integer or null")
    if d.get("reason") is not None and not isinstance(d["reason"], str):
        problems.append("reason must be a string or null")
    if problems:
        raise InvalidDecision(f"decision {d.get('decision_id')!r}: " + "; ".join(problems))


def transition(decision_type: str) -> tuple[TriggerMode, AppealOp]:
    """How a decision type carries triggers and the appeal flag (table in the module doc)."""
    match decision_type:
        case "restricted" | "extended":
            return "merge", "keep"
        case "lifted" | "appeal_denied":
            return "keep", "clear"
        case "appeal_received":
            return "keep", "set"
        case "appeal_rejected" | "reporter_penalized":
            return "keep", "keep"
        case _:
            raise TypeError(f"unknown decision type {decision_type!r}")


def sorted_unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))


def fold(prev: AccountStatus | None, d: Decision) -> AccountStatus:
    """The status after applying decision `d` to `prev` (pure; caller checks seq order)."""
    trigger_mode, appeal_op = transition(d["type"])
    scopes = sorted_unique(d["scopes"])
    new_triggers = sorted_unique(d.get("triggers") or ())
    carried = prev if prev is not None and prev.restricted else None  # same restriction
    triggers: tuple[str, ...] = ()
    pending = False
    since = None
    if scopes:
        if carried is None:
            triggers, since = new_triggers, d["at"]
        else:
            since = carried.since_ms
            merged = sorted_unique((*carried.triggers, *new_triggers))
            triggers = merged if trigger_mode == "merge" else carried.triggers
        kept = carried is not None and carried.appeal_pending
        pending = appeal_op == "set" or (appeal_op == "keep" and kept)
    return AccountStatus(
        account_id=d["account_id"], status="restricted" if scopes else "clear", scopes=scopes,
        level=d.get("level"), lift_at_ms=d.get("lift_at"), triggers=triggers, seq=d["seq"],
        type=d["type"], reason=d.get("reason"), at_ms=d["at"], since_ms=since,
        appeal_pending=pending, appeal_allowed_at_ms=d.get("appeal_allowed_at"),
    )


class ReadModel(Protocol):
    """What every view offers; one contract test suite runs against each implementation."""

    async def apply(self, decisions: Sequence[Decision]) -> list[ApplyResult]: ...
    async def status(self, account_id: str) -> AccountStatus | None: ...
    async def history(
        self, account_id: str, limit: int = DEFAULT_HISTORY_CAP
    ) -> list[dict[str, Any]]: ...
    async def active(
        self, limit: int = 100, offset: int = 0, order: ActiveOrder = "soonest_lift"
    ) -> list[ActiveEntry]: ...
    async def count_active(self) -> int: ...
    async def digest(self) -> str: ...


def _score_text(score: float | None) -> str | None:
    return None if score is None else "inf" if score == float("inf") else str(int(score))


def expected_scores(status: AccountStatus) -> tuple[float | None, float | None]:
    """The zset scores a status implies: lift_at (+inf when indefinite) and since, or absent."""
    if not status.restricted:
        return None, None
    lift = float("inf") if status.lift_at_ms is None else float(status.lift_at_ms)
    return lift, float(status.since_ms or 0)


class Digest:
    """Order-independent digest of a projected state, so Redis can be read back by SCAN.

    Each account contributes sha256 of its canonical record (status, history, active-set
    scores); contributions are summed mod 2**256, and the totals of the active sets are mixed
    in so an orphan zset member changes the result.
    """

    def __init__(self) -> None:
        self._sum = 0
        self._accounts = 0

    def add(
        self, status: AccountStatus, history: Sequence[Decision],
        scores: tuple[float | None, float | None],
    ) -> None:
        """`scores`: the account's (active, active:since) zset scores, None where absent."""
        record = {
            "status": status.to_dict(), "history": list(history),
            "active": [_score_text(s) for s in scores],
        }
        blob = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        self._sum = (self._sum + int.from_bytes(hashlib.sha256(blob).digest(), "big")) % 2**256
        self._accounts += 1

    def result(self, n_active: int, n_since: int) -> str:
        text = f"warden-view-v1|{self._accounts}|{n_active}|{n_since}|{self._sum:064x}"
        return hashlib.sha256(text.encode()).hexdigest()


def order_active(entries: Iterable[ActiveEntry], order: ActiveOrder) -> list[ActiveEntry]:
    """The Redis zset orders (score, then member bytes; UTF-8 bytes sort like code points)."""
    if order == "soonest_lift":
        inf = float("inf")
        return sorted(entries, key=lambda e: (inf if e.lift_at_ms is None else e.lift_at_ms,
                                              e.account_id))
    if order == "newest":
        return sorted(entries, key=lambda e: (e.since_ms, e.account_id), reverse=True)
    raise ValueError(f"order must be one of {ACTIVE_ORDERS}, got {order!r}")


class InMemoryView:
    """The reference implementation: a dict per account. Also computes rebuild's expected digest."""

    def __init__(self, *, history_cap: int = DEFAULT_HISTORY_CAP) -> None:
        if history_cap < 1:
            raise ValueError("history_cap must be >= 1")
        self.history_cap = history_cap
        self._status: dict[str, AccountStatus] = {}
        self._history: dict[str, deque[dict[str, Any]]] = {}

    def apply_now(self, decisions: Sequence[Decision]) -> list[ApplyResult]:
        """Synchronous `apply`, for callers with no event loop at hand."""
        for d in decisions:
            check_decision(d)
        results: list[ApplyResult] = []
        for d in decisions:
            account = d["account_id"]
            prev = self._status.get(account)
            if prev is not None and prev.seq >= d["seq"]:
                results.append("skipped")
                continue
            self._status[account] = fold(prev, d)
            # A JSON round trip stores exactly what Redis would hand back, and no aliases.
            entry = orjson.loads(orjson.dumps(d))
            self._history.setdefault(account, deque(maxlen=self.history_cap)).appendleft(entry)
            results.append("applied")
        return results

    async def apply(self, decisions: Sequence[Decision]) -> list[ApplyResult]:
        return self.apply_now(decisions)

    async def status(self, account_id: str) -> AccountStatus | None:
        return self._status.get(account_id)

    async def history(
        self, account_id: str, limit: int = DEFAULT_HISTORY_CAP
    ) -> list[dict[str, Any]]:
        return list(self._history.get(account_id, ()))[: max(limit, 0)]

    def _active_entries(self) -> list[ActiveEntry]:
        return [ActiveEntry(s.account_id, s.lift_at_ms, s.since_ms or 0)
                for s in self._status.values() if s.restricted]

    async def active(
        self, limit: int = 100, offset: int = 0, order: ActiveOrder = "soonest_lift"
    ) -> list[ActiveEntry]:
        rows = order_active(self._active_entries(), order)
        return rows[offset: offset + max(limit, 0)]

    async def count_active(self) -> int:
        return sum(1 for s in self._status.values() if s.restricted)

    @property
    def accounts(self) -> int:
        return len(self._status)

    def digest_now(self) -> str:
        d = Digest()
        for account, status in self._status.items():
            d.add(status, self._history[account], expected_scores(status))
        n = sum(1 for s in self._status.values() if s.restricted)
        return d.result(n, n)

    async def digest(self) -> str:
        return self.digest_now()
