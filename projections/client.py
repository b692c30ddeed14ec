"""Client for downstream services: may account X use feature F now? (SPEC "Redis read model").

One round trip per call in the steady state: the live-namespace pointer is cached for
`pointer_ttl_s` (default 1 s, shorter than rebuild's `retire_after_s`, so a cached pointer always
names a namespace that still exists). `refresh()` drops the cache at once.

Fail-open by design: an account with no projected decision, or a Redis that was never projected
(no pointer), is allowed; Redis errors propagate so the caller picks its own policy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import redis as sync_redis
import redis.asyncio as async_redis

from projections.keys import Keys, pointer_key
from projections.redis_view import status_from_hash, text
from projections.view import FEATURES

Clock = Callable[[], float]


def check_feature(feature: str) -> None:
    if feature not in FEATURES:
        raise ValueError(f"unknown feature {feature!r}; valid features: {', '.join(FEATURES)}")


def allowed_from_fields(status: Any, scopes: Any, feature: str) -> bool:
    """The decision itself, from an HMGET of (status, scopes)."""
    if status is None or text(status) != "restricted":
        return True
    return feature not in orjson.loads(text(scopes))


class _PointerCache:
    """The live namespace (as Keys) with an expiry; pure, the clients do the I/O."""

    def __init__(self, prefix: str, ttl_s: float, clock: Clock) -> None:
        self.prefix = prefix
        self.key = pointer_key(prefix)
        self.ttl_s = ttl_s
        self.clock = clock
        self._keys: Keys | None = None
        self._expires_at = float("-inf")

    def fresh(self) -> bool:
        return self.clock() < self._expires_at

    @property
    def keys(self) -> Keys | None:
        return self._keys

    def store(self, namespace: Any) -> Keys | None:
        self._keys = None if namespace is None else Keys(self.prefix, text(namespace))
        self._expires_at = self.clock() + self.ttl_s
        return self._keys



class WardenClient:
    """Async client (redis.asyncio)."""

    def __init__(
        self, redis: async_redis.Redis, prefix: str = "warden", *,
        pointer_ttl_s: float = 1.0, clock: Clock = time.monotonic,
    ) -> None:
        self.redis = redis
        self._pointer = _PointerCache(prefix, pointer_ttl_s, clock)

    @classmethod
    def from_url(cls, url: str, prefix: str = "warden", **kwargs: Any) -> WardenClient:
        return cls(async_redis.Redis.from_url(url), prefix, **kwargs)

    async def refresh(self) -> str | None:
        """Re-read the pointer now (e.g. right after a rebuild); returns the live namespace."""
        keys = self._pointer.store(await self.redis.get(self._pointer.key))
        return None if keys is None else keys.namespace

    async def _keys(self) -> Keys | None:
        if not self._pointer.fresh():
            await self.refresh()
        return self._pointer.keys

    async def is_allowed(self, account_id: str, feature: str) -> bool:
        check_feature(feature)
        keys = await self._keys()
        if keys is None:
            return True
        status, scopes = await self.redis.hmget(keys.acct(account_id), ["status", "scopes"])
        return allowed_from_fields(status, scopes, feature)

    async def status(self, account_id: str) -> dict[str, Any] | None:
        keys = await self._keys()
        if keys is None:
            return None
        found = status_from_hash(await self.redis.hgetall(keys.acct(account_id)))
        return None if found is None else found.to_dict()

    async def aclose(self) -> None:
        await self.redis.aclose()


class SyncWardenClient:
    """Blocking client (redis.Redis), for services without an event loop."""

    def __init__(
        self, redis: sync_redis.Redis, prefix: str = "warden", *,
        pointer_ttl_s: float = 1.0, clock: Clock = time.monotonic,
    ) -> None:
        self.redis = redis
        self._pointer = _PointerCache(prefix, pointer_ttl_s, clock)

    @classmethod
    def from_url(cls, url: str, prefix: str = "warden", **kwargs: Any) -> SyncWardenClient:
        return cls(sync_redis.Redis.from_url(url), prefix, **kwargs)

    def refresh(self) -> str | None:
        keys = self._pointer.store(self.redis.get(self._pointer.key))
        return None if keys is None else keys.namespace

    def _keys(self) -> Keys | None:
        if not self._pointer.fresh():
            self.refresh()
        return self._pointer.keys

    def is_allowed(self, account_id: str, feature: str) -> bool:
        check_feature(feature)
        keys = self._keys()
        if keys is None:
            return True
        status, scopes = self.redis.hmget(keys.acct(account_id), ["status", "scopes"])
        return allowed_from_fields(status, scopes, feature)

    def status(self, account_id: str) -> dict[str, Any] | None:
        keys = self._keys()
        if keys is None:
            return None
        found = status_from_hash(self.redis.hgetall(keys.acct(account_id)))
        return None if found is None else found.to_dict()

    def close(self) -> None:
        self.redis.close()
