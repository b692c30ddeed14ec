"""Fixtures for the projection tests: views of both kinds, a decision log builder.

`redis_url` / `unique_id` normally come from tests/conftest.py (which starts a real Redis);
until that file provides them, the fallbacks below use WARDEN_REDIS_URL. Delete the fallbacks
once the root conftest has landed.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as async_redis

_REPO = Path(__file__).resolve().parents[2]
if str(_REPO) not in sys.path:  # the package is not installed into the venv
    sys.path.insert(0, str(_REPO))

from decision_log import DecisionLog  # noqa: E402

from projections.redis_view import RedisView  # noqa: E402
from projections.view import DEFAULT_HISTORY_CAP, InMemoryView, ReadModel  # noqa: E402


def _root_provides(name: str) -> bool:
    root = _REPO / "tests" / "conftest.py"
    return root.is_file() and f"def {name}(" in root.read_text(encoding="utf-8")


if not _root_provides("redis_url"):

    @pytest.fixture(scope="session")
    def redis_url() -> str:
        return os.environ.get("WARDEN_REDIS_URL", "redis://localhost:6379/0")


if not _root_provides("unique_id"):

    @pytest.fixture
    def unique_id() -> str:
        return uuid.uuid4().hex[:10]


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
