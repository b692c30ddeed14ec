"""The Redis view: apply.lua per decision, pipelined, plus the active-restriction sorted sets.

Cluster safety: the script touches only the account's two keys, which share its hash tag
(keys.py), so it runs atomically on one slot. The active zsets span all accounts and cannot
share that slot, so they are a second, idempotent step: ZADD/ZREM derived from the CURRENT
status the script returns, also for skipped decisions. A crash between the two steps leaves
the zsets stale until the batch is redelivered; the redelivery is skipped by the script and
repairs the zsets. A batch costs two round trips: every EVALSHA in one pipeline, then every
zset update in another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from projections.keys import Keys
from projections.view import (
    ACTIVE_ORDERS,
    DEFAULT_HISTORY_CAP,
    AccountStatus,
    ActiveEntry,
    ActiveOrder,
    ApplyResult,
    Decision,
    Digest,
    check_decision,
    sorted_unique,
    transition,
)

APPLY_SCRIPT = (Path(__file__).parent / "apply.lua").read_text(encoding="utf-8")
APPLY_SHA = hashlib.sha1(APPLY_SCRIPT.encode("utf-8")).hexdigest()
_SCAN_COUNT = 1000
_DIGEST_BATCH = 500


def text(value: Any) -> str:
    """Accept clients with or without decode_responses."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _opt_int(value: str) -> int | None:
    return int(value) if value else None


def status_from_hash(fields: Mapping[Any, Any]) -> AccountStatus | None:
    """Parse a status hash (HGETALL reply); None when the account has no decision yet."""
    if not fields:
        return None
    f = {text(k): text(v) for k, v in fields.items()}
    return AccountStatus(
        account_id=f["account_id"],
        status="restricted" if f["status"] == "restricted" else "clear",
        scopes=sorted_unique(orjson.loads(f["scopes"])), level=_opt_int(f["level"]),
        lift_at_ms=_opt_int(f["lift_at"]), triggers=sorted_unique(orjson.loads(f["triggers"])),
        seq=int(f["seq"]), type=f["type"], reason=f["reason"] or None, at_ms=int(f["at"]),
        since_ms=_opt_int(f["since"]), appeal_pending=f["appeal_pending"] == "1",
        appeal_allowed_at_ms=_opt_int(f["appeal_allowed_at"]),
    )


def _field(value: int | str | None) -> str:
    return "" if value is None else str(value)


def script_args(d: Decision, history_cap: int) -> list[str | bytes]:
    """ARGV of apply.lua for one (checked) decision; see the script's header."""
    trigger_mode, appeal_op = transition(d["type"])
    scopes = sorted_unique(d["scopes"])
    triggers = sorted_unique(d.get("triggers") or ())
    return [
        str(d["seq"]), str(history_cap), orjson.dumps(d), d["account_id"], d["type"],
        "restricted" if scopes else "clear", orjson.dumps(scopes), _field(d.get("level")),
        _field(d.get("lift_at")), _field(d.get("reason")), str(d["at"]),
        _field(d.get("appeal_allowed_at")), trigger_mode, appeal_op, orjson.dumps(triggers),
        *triggers,
    ]


def _score(value: float | None) -> int | None:
    """A zset score back to ms; +inf (indefinite) and absent both read as None."""
    return None if value is None or value == float("inf") else int(value)


class RedisView:
    """The read model in one namespace of Redis (keys.py); the live one is named by the pointer."""

    def __init__(
        self, redis: Redis, prefix: str = "warden", namespace: str = "g0", *,
        history_cap: int = DEFAULT_HISTORY_CAP,
    ) -> None:
        if history_cap < 1:
            raise ValueError("history_cap must be >= 1")
        self.redis = redis
        self.keys = Keys(prefix, namespace)
        self.history_cap = history_cap
        self._script_loaded = False

    @property
    def namespace(self) -> str:
        return self.keys.namespace

    async def apply(self, decisions: Sequence[Decision]) -> list[ApplyResult]:
        """Apply a batch: "applied" per new decision, "skipped" per one already projected."""
        for d in decisions:
            check_decision(d)
        if not decisions:
            return []
        rows = await self._run_script(decisions)
        latest: dict[str, list[Any]] = {}
        for d, row in zip(decisions, rows, strict=True):
            latest[d["account_id"]] = row  # later rows of an account see the earlier writes
        pipe = self.redis.pipeline(transaction=False)
        for account, (_, status, lift_at, since) in latest.items():
            if status is not None and text(status) == "restricted":
                lift = text(lift_at)
                pipe.zadd(self.keys.active, {account: lift or "+inf"})
                pipe.zadd(self.keys.active_since, {account: text(since)})
            else:
                pipe.zrem(self.keys.active, account)
                pipe.zrem(self.keys.active_since, account)
        await pipe.execute()
        return ["applied" if row[0] == 1 else "skipped" for row in rows]

    async def _run_script(self, decisions: Sequence[Decision]) -> list[Any]:
        """One pipeline of EVALSHA; reload and resend the whole batch (idempotent) on NOSCRIPT."""
        if not self._script_loaded:
            await self.redis.script_load(APPLY_SCRIPT)
            self._script_loaded = True
        for attempt in range(2):
            pipe = self.redis.pipeline(transaction=False)
            for d in decisions:
                account = d["account_id"]
                pipe.evalsha(APPLY_SHA, 2, self.keys.acct(account), self.keys.hist(account),
                             *script_args(d, self.history_cap))
            rows = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in rows):
                await self.redis.script_load(APPLY_SCRIPT)  # e.g. after SCRIPT FLUSH / failover
                continue
            for r in rows:
                if isinstance(r, Exception):
                    raise r
            return rows
        raise AssertionError("unreachable")

    async def status(self, account_id: str) -> AccountStatus | None:
        return status_from_hash(await self.redis.hgetall(self.keys.acct(account_id)))

    async def history(
        self, account_id: str, limit: int = DEFAULT_HISTORY_CAP
    ) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        raw = await self.redis.lrange(self.keys.hist(account_id), 0, limit - 1)
        return [orjson.loads(item) for item in raw]

    async def active(
        self, limit: int = 100, offset: int = 0, order: ActiveOrder = "soonest_lift"
    ) -> list[ActiveEntry]:
        """A page of active restrictions: ZRANGE on the ordering zset, ZMSCORE on the other."""
        if order not in ACTIVE_ORDERS:
            raise ValueError(f"order must be one of {ACTIVE_ORDERS}, got {order!r}")
        if limit <= 0:
            return []
        newest = order == "newest"
        ranked, other = ((self.keys.active_since, self.keys.active) if newest
                         else (self.keys.active, self.keys.active_since))
        rows = cast("list[tuple[Any, float]]", await self.redis.zrange(
            ranked, offset, offset + limit - 1, desc=newest, withscores=True))
        if not rows:
            return []
        others: list[float | None] = await self.redis.zmscore(other, [m for m, _ in rows])
        out = []
        for (member, score), other_score in zip(rows, others, strict=True):
            lift, since = (other_score, score) if newest else (score, other_score)
            out.append(ActiveEntry(text(member), _score(lift), _score(since) or 0))
        return out

    async def count_active(self) -> int:
        return int(await self.redis.zcard(self.keys.active))

    async def digest(self) -> str:
        """view.Digest over what is actually stored, read back with SCAN (works while live)."""
        digest = Digest()
        seen: set[bytes | str] = set()  # SCAN may return a key twice
        batch: list[Any] = []
        async for key in self.redis.scan_iter(match=self.keys.acct_pattern, count=_SCAN_COUNT):
            if key in seen:
                continue
            seen.add(key)
            batch.append(key)
            if len(batch) >= _DIGEST_BATCH:
                await self._digest_batch(digest, batch)
                batch = []
        if batch:
            await self._digest_batch(digest, batch)
        pipe = self.redis.pipeline(transaction=False)
        pipe.zcard(self.keys.active)
        pipe.zcard(self.keys.active_since)
        n_active, n_since = await pipe.execute()
        return digest.result(int(n_active), int(n_since))

    async def _digest_batch(self, digest: Digest, keys: list[Any]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        raw = await pipe.execute()
        statuses = [s for s in map(status_from_hash, raw) if s is not None]
        if not statuses:
            return
        ids = [s.account_id for s in statuses]
        pipe = self.redis.pipeline(transaction=False)
        for account in ids:
            pipe.lrange(self.keys.hist(account), 0, -1)
        pipe.zmscore(self.keys.active, ids)
        pipe.zmscore(self.keys.active_since, ids)
        *histories, lifts, sinces = await pipe.execute()
        for status, hist, lift, since in zip(statuses, histories, lifts, sinces, strict=True):
            digest.add(status, [orjson.loads(h) for h in hist], (lift, since))
