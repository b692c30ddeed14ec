"""Fixtures for the projection tests: views of both kinds, a decision log builder.

`redis_url` (a real Redis) and `unique_id` come from tests/conftest.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as async_redis
from decision_log import DecisionLog

from projections.redis_view import RedisView
from projections.view import DEFAULT_HISTORY_CAP, InMemoryView, ReadModel


@pytest.fixture
def log() -> DecisionLog:
    return DecisionLog()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[async_redis.Redis]:
    client = async_redis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def prefix(unique_id: str) -> str:
    return f"test-{unique_id}"


@pytest.fixture
async def cleanup_prefix(redis_url: str, prefix: str) -> AsyncIterator[str]:
    """Yields the prefix; deletes every key under it afterwards."""
    yield prefix
    client = async_redis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await client.unlink(*keys)
    await client.aclose()


MakeView = Callable[..., Awaitable[ReadModel]]

VIEW_KINDS = ["memory", pytest.param("redis", marks=pytest.mark.integration)]


@pytest.fixture(params=VIEW_KINDS)
def make_view(request: pytest.FixtureRequest) -> MakeView:
    """Factory of empty views of the parametrized kind (`history_cap` optional).

    A sync fixture: it resolves the async ones up front (cleanup_prefix removes the keys).
    """
    if request.param == "memory":

        async def make_memory(history_cap: int = DEFAULT_HISTORY_CAP) -> ReadModel:
            return InMemoryView(history_cap=history_cap)

        return make_memory
    client = request.getfixturevalue("redis_client")
    prefix = request.getfixturevalue("cleanup_prefix")
    created = Counter[str]()

    async def make_redis(history_cap: int = DEFAULT_HISTORY_CAP) -> ReadModel:
        created["n"] += 1
        return RedisView(client, prefix, f"n{created['n']}", history_cap=history_cap)

    return make_redis
