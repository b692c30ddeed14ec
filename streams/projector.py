"""Projects `account-decisions` into the Redis read model (SPEC "Redis read model").

Each batch is applied in one pipelined round trip through projections/'s
idempotent script, so redelivery after a crash changes nothing. Redis being
down never loses a decision: the batch is retried with capped exponential
backoff (the consumer stops pulling meanwhile: back-pressure) and `/health`
reports unhealthy until a write succeeds again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from projections.rebuild import current_namespace, ensure_namespace
from projections.redis_view import RedisView
from streams.metrics import Metrics
from streams.settings import Settings

log = logging.getLogger("warden.projector")

BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0


class Projector:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.redis: Redis | None = None
        self.view: RedisView | None = None
        self.healthy = False
        self.last_error: str | None = None

    async def start(self) -> None:
        if self.redis is None:
            # Timeouts turn a frozen or partitioned Redis into errors (retried with backoff,
            # reported on /health) instead of a projector that hangs silently.
            self.redis = Redis.from_url(self.settings.redis_url, socket_timeout=5,
                                        socket_connect_timeout=3, health_check_interval=10,
                                        **self.settings.redis_options())

    async def _current_view(self) -> RedisView:
        assert self.redis is not None
        namespace = await current_namespace(self.redis, self.settings.redis_prefix)
        if namespace is None:
            namespace = await ensure_namespace(self.redis, self.settings.redis_prefix)
        if self.view is None or self.view.namespace != namespace:
            self.view = RedisView(self.redis, self.settings.redis_prefix, namespace)
        return self.view

    async def apply(self, messages: Sequence[tuple[bytes | None, float | None]]) -> None:
        """Apply a batch of (decision JSON, produce timestamp s); retries until it lands."""
        await self.start()
        decisions = []
        newest = 0.0
        for value, timestamp in messages:
            if value is None:
                continue
            decisions.append(orjson.loads(value))
            newest = max(newest, timestamp or 0.0)
        if not decisions:
            return
        delay = BACKOFF_START_S
        while True:
            try:
                view = await self._current_view()
                results = await view.apply(decisions)
            except (RedisError, OSError) as exc:
                self._down(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            break
        self._up()
        for result in results:
            self.metrics.projection_applied.labels(result).inc()
        if newest:
            self.metrics.projection_lag.set(max(0.0, time.time() - newest))

    async def refresh_active_gauge(self) -> None:
        if self.redis is None:
            return
        try:
            view = await self._current_view()
            self.metrics.active.set(await view.count_active())
        except (RedisError, OSError) as exc:
            self._down(exc)
        else:
            self._up()

    def _down(self, exc: Exception) -> None:
        if self.healthy or self.last_error is None:
            log.warning("Redis unavailable, retrying with backoff: %s", type(exc).__name__)
        self.healthy = False
        self.last_error = type(exc).__name__
        self.metrics.redis_up.set(0)
        self.metrics.projection_errors.inc()

    def _up(self) -> None:
        if not self.healthy and self.last_error is not None:
            log.info("Redis reachable again")
        self.healthy = True
        self.last_error = None
        self.metrics.redis_up.set(1)

    async def stop(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
            self.redis = None
