"""streams/projector.py against a real Redis: the projector applies every decision of the
log; the direct path applies acknowledged ones early, in order, and never past a gap."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from projections.view import InMemoryView
from streams.metrics import Metrics
from streams.projector import Projector
from streams.settings import Settings

sys.path.insert(0, str(Path(__file__).parents[1] / "projections"))
from decision_log import DecisionLog  # noqa: E402

T0 = 1_767_225_600_000


@pytest.fixture
async def projector(redis_url, unique_id):
    projector = Projector(Settings(redis_url=redis_url, redis_prefix=f"test-{unique_id}"),
                          Metrics(CollectorRegistry()))
    yield projector
    await projector.start()
    prefix = projector.settings.redis_prefix
    keys = [k async for k in projector.redis.scan_iter(match=f"{prefix}:*", count=1000)]
    if keys:
        await projector.redis.unlink(*keys)
    await projector.stop()


def direct(projector: Projector, result: str) -> float:
    return projector.metrics.registry.get_sample_value(
        "warden_projection_direct_total", {"result": result}) or 0.0


def story(log: DecisionLog) -> list[dict]:
    return [log("acct-1", "restricted", at=T0, scopes=["report"], lift_at=T0 + 5),
            log("acct-2", "restricted", at=T0, scopes=["create_room"], lift_at=T0 + 7),
            log("acct-1", "extended", at=T0 + 1, scopes=["report", "add_friend"], lift_at=T0 + 9),
            log("acct-1", "lifted", at=T0 + 9, reason="auto_quiet")]


async def expected(decisions: list[dict]) -> str:
    memory = InMemoryView()
    await memory.apply(decisions)
    return await memory.digest()


async def test_acknowledged_decisions_reach_redis_in_order_and_the_projector_finds_them_there(
        projector):
    decisions = story(DecisionLog())

    for d in decisions:  # one batch each, queued at once: written one after another
        projector.apply_direct([orjson.dumps(d)])
    await projector.drain_direct()
    view = await projector._current_view()
    assert await view.digest() == await expected(decisions)
    await projector.apply([(orjson.dumps(d), T0 / 1000) for d in decisions])
    assert await view.digest() == await expected(decisions)
    assert direct(projector, "applied") == 4
    assert projector.metrics.registry.get_sample_value(
        "warden_projection_applied_total", {"result": "skipped"}) == 4


async def test_a_failed_direct_write_leaves_a_gap_that_later_ones_do_not_pass(
        projector, monkeypatch):
    decisions = story(DecisionLog())

    await projector.start()
    view = await projector._current_view()
    apply = type(view).apply
    calls = 0

    async def failing_once(self, batch, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RedisConnectionError("connection reset")
        return await apply(self, batch, **kwargs)

    monkeypatch.setattr(type(view), "apply", failing_once)
    projector.apply_direct([orjson.dumps(decisions[0])])
    projector.apply_direct([orjson.dumps(decisions[2])])  # fails: acct-1's seq 2 missing
    await projector.drain_direct()
    assert projector.last_error == "ConnectionError"
    projector.apply_direct([orjson.dumps(decisions[3])])  # shed while Redis is down
    await projector.refresh_active_gauge()  # a call that succeeds: up again
    projector.apply_direct([orjson.dumps(decisions[1]), orjson.dumps(decisions[3])])
    await projector.drain_direct()
    status = await view.status("acct-1")
    assert (status.seq, status.type) == (1, "restricted")  # not seq 3 over the missing 2
    assert direct(projector, "deferred") == 1  # (acct-1's seq 3)
    await projector.apply([(orjson.dumps(d), T0 / 1000) for d in decisions])
    assert await view.digest() == await expected(decisions)

    assert direct(projector, "failed") == 1
    assert direct(projector, "shed") == 1
    assert direct(projector, "applied") == 2  # acct-1's first, acct-2's


async def test_a_direct_write_waits_while_the_projector_writes(projector):
    """One writer at a time: each derives its active-set update from the status its script
    read, and an update from an older status must not land after a newer one."""
    decisions = story(DecisionLog())

    await projector.start()
    async with projector._writing:  # the projector's write under way
        projector.apply_direct([orjson.dumps(decisions[0])])
        await asyncio.sleep(0.05)
        view = await projector._current_view()
        assert await view.status("acct-1") is None
    await projector.drain_direct()
    assert (await view.status("acct-1")).seq == 1

