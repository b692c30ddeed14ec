"""Namespaces and `rebuild`: replay into a fresh namespace, verify, switch (SPEC "Redis read model")

Readers find the live namespace through `{prefix}:current` (keys.py), so a rebuild writes a
complete copy beside the live one and switches every reader with one SET. Verification compares
the digest read back from Redis with the digest `InMemoryView` folds from the same decisions.

Kafka stays out: `rebuild` takes an async iterator of decision dicts (the caller reads
`account-decisions` from offset 0 to the end offsets it captured). The live projector must
follow the pointer (`live_view`) and, after a switch, re-apply decisions from the position the
rebuild's iterator stopped at; re-applying ones it already wrote is harmless (idempotent).
"""

from __future__ import annotations

from asyncio import sleep
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from projections.keys import Keys, check_namespace, generation_key, pointer_key
from projections.redis_view import RedisView, text
from projections.view import DEFAULT_HISTORY_CAP, Decision, InMemoryView

INITIAL_NAMESPACE = "g0"
_UNLINK_BATCH = 500

# Compare-and-set of the pointer: a concurrent rebuild that switched first is not overwritten.
_SWITCH = """
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""


class RebuildVerificationError(RuntimeError):
    """The rebuilt namespace does not match the decisions; the pointer was left alone."""

    def __init__(self, namespace: str, expected: str, actual: str) -> None:
        super().__init__(
            f"rebuilt namespace {namespace!r} has digest {actual}, decisions give {expected}; "
            f"not switching (namespace kept for inspection, drop_namespace() removes it)"
        )
        self.namespace, self.expected, self.actual = namespace, expected, actual


@dataclass(frozen=True, slots=True)
class RebuildReport:
    decisions: int
    applied: int
    skipped: int
    accounts: int
    digest: str
    old_namespace: str | None
    new_namespace: str
    removed_keys: int


async def current_namespace(redis: Redis, prefix: str) -> str | None:
    value = await redis.get(pointer_key(prefix))
    return None if value is None else text(value)


async def ensure_namespace(redis: Redis, prefix: str) -> str:
    """The live namespace, creating the pointer (at g0) on a never-projected Redis."""
    await redis.set(pointer_key(prefix), INITIAL_NAMESPACE, nx=True)
    name = await current_namespace(redis, prefix)
    assert name is not None
    return name


async def allocate_namespace(redis: Redis, prefix: str) -> str:
    """A namespace name never used before under this prefix (INCR, so concurrent-safe)."""
    current = await current_namespace(redis, prefix)
    while True:
        name = f"g{int(await redis.incr(generation_key(prefix)))}"
        if name != current:  # only if the counter was lost while g<n> is live
            return name


async def switch_namespace(redis: Redis, prefix: str, old: str | None, new: str) -> bool:
    """Point readers at `new` iff the pointer still names `old`; one atomic script call."""
    check_namespace(new)
    done = await redis.eval(_SWITCH, 1, pointer_key(prefix), old or "", new)
    return int(done) == 1


async def drop_namespace(redis: Redis, prefix: str, namespace: str) -> int:
    """Delete every key of a namespace (SCAN + UNLINK in batches); returns how many."""
    removed = 0
    batch: list[Any] = []
    async for key in redis.scan_iter(match=Keys(prefix, namespace).all_pattern, count=1000):
        batch.append(key)
        if len(batch) >= _UNLINK_BATCH:
            removed += int(await redis.unlink(*batch))
            batch = []
    if batch:
        removed += int(await redis.unlink(*batch))
    return removed


async def live_view(
    redis: Redis, prefix: str = "warden", *, history_cap: int = DEFAULT_HISTORY_CAP
) -> RedisView:
    """A RedisView on the namespace readers use now; projectors re-open it after a switch."""
    return RedisView(redis, prefix, await ensure_namespace(redis, prefix),
                     history_cap=history_cap)


async def rebuild(
    decisions: AsyncIterable[Decision], redis: Redis, prefix: str = "warden", *,
    batch_size: int = 1000, history_cap: int = DEFAULT_HISTORY_CAP,
    retire_after_s: float = 2.0,
) -> RebuildReport:
    """Project `decisions` into a fresh namespace, verify its digest, switch, drop the old one.

    `retire_after_s` waits before dropping the old namespace so clients that cached the old
    pointer (client.py, TTL 1 s) keep reading a complete copy instead of an empty one.
    Raises RebuildVerificationError (pointer untouched) when the digests differ, and
    RuntimeError when another rebuild switched the pointer meanwhile.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    old = await current_namespace(redis, prefix)
    new = await allocate_namespace(redis, prefix)
    target = RedisView(redis, prefix, new, history_cap=history_cap)
    expected = InMemoryView(history_cap=history_cap)
    total = applied = 0
    batch: list[Decision] = []

    async def flush() -> None:
        nonlocal applied
        results = await target.apply(batch)
        expected.apply_now(batch)
        applied += results.count("applied")
        batch.clear()

    async for decision in decisions:
        batch.append(decision)
        total += 1
        if len(batch) >= batch_size:
            await flush()
    if batch:
        await flush()

    want, got = expected.digest_now(), await target.digest()
    if want != got:
        raise RebuildVerificationError(new, want, got)
    if not await switch_namespace(redis, prefix, old, new):
        raise RuntimeError(
            f"pointer {pointer_key(prefix)!r} no longer names {old!r}; another rebuild switched "
            f"first, so {new!r} was not made live"
        )
    removed = 0
    if old is not None:
        if retire_after_s > 0:
            await sleep(retire_after_s)
        removed = await drop_namespace(redis, prefix, old)
    return RebuildReport(
        decisions=total, applied=applied, skipped=total - applied, accounts=expected.accounts,
        digest=got, old_namespace=old, new_namespace=new, removed_keys=removed,
    )
