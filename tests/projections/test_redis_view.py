"""What only the Redis view has: round trips, the two-step active set, script reloading."""

from __future__ import annotations

import hashlib

import pytest
import redis.asyncio as async_redis

import projections.redis_view as redis_view_module
from projections.redis_view import RedisView
from projections.view import ActiveEntry, InMemoryView

pytestmark = pytest.mark.integration
T0 = 1_767_225_600_000


class RoundTrips:
    """Counts what the client sends: one per direct command, one per pipeline execute."""

    def __init__(self, client: async_redis.Redis) -> None:
        self.count = 0
        direct, make_pipeline = client.execute_command, client.pipeline

        async def execute_command(*args, **kwargs):
            self.count += 1
            return await direct(*args, **kwargs)

        def pipeline(*args, **kwargs):
            pipe = make_pipeline(*args, **kwargs)
            run = pipe.execute

            async def execute(*a, **kw):
                self.count += 1
                return await run(*a, **kw)

            pipe.execute = execute
            return pipe

        client.execute_command, client.pipeline = execute_command, pipeline


async def test_a_batch_of_a_thousand_decisions_takes_two_round_trips(
    redis_client, cleanup_prefix, log
):
    view = RedisView(redis_client, cleanup_prefix, "g1")
    await view.apply([log("warm-up", "lifted", at=T0)])  # loads the script once
    trips = RoundTrips(redis_client)
    batch = [log(f"acct-{i % 400}", "restricted" if i < 400 else "extended", at=T0 + i,
                 scopes=["add_friend"], lift_at=T0 + i) for i in range(1000)]
    assert await view.apply(batch) == ["applied"] * 1000
    assert trips.count == 2
    assert await view.count_active() == 400


async def test_a_crash_between_script_and_active_set_heals_on_redelivery(
    redis_client, cleanup_prefix, log
):
    view = RedisView(redis_client, cleanup_prefix, "g1")
    restricted = log("acct-1", "restricted", at=T0, scopes=["report"], lift_at=T0 + 5)
    await view._run_script([restricted])  # step one only, as if the worker died here
    assert await view.active() == []
    assert await view.apply([restricted]) == ["skipped"]
    assert await view.active() == [ActiveEntry("acct-1", T0 + 5, T0)]

    lifted = log("acct-1", "lifted", at=T0 + 5, reason="auto_quiet")
    await view._run_script([lifted])
    assert await view.apply([restricted, lifted]) == ["skipped", "skipped"]
    assert await view.active() == []


async def test_a_missing_script_is_loaded_and_the_batch_resent(
    redis_client, cleanup_prefix, log, monkeypatch
):
    # A script text this Redis has never seen stands in for a flushed script cache
    # (SCRIPT FLUSH would disturb everyone else sharing the test Redis).
    script = redis_view_module.APPLY_SCRIPT + f"\n-- {cleanup_prefix}\n"
    monkeypatch.setattr(redis_view_module, "APPLY_SCRIPT", script)
    monkeypatch.setattr(redis_view_module, "APPLY_SHA", hashlib.sha1(script.encode()).hexdigest())
    view = RedisView(redis_client, cleanup_prefix, "g1")
    view._script_loaded = True  # it believes the script is there
    d = log("acct-1", "restricted", at=T0, scopes=["report"])
    assert await view.apply([d, d]) == ["applied", "skipped"]
    assert (await view.status("acct-1")).scopes == ("report",)


async def test_a_client_decoding_responses_reads_the_same_state(redis_url, cleanup_prefix, log):
    client = async_redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        view, memory = RedisView(client, cleanup_prefix, "g1"), InMemoryView()
        decisions = [log("é{}", "restricted", at=T0, scopes=["report"], triggers=["emulator"],
                         lift_at=T0 + 9)]
        for v in (view, memory):
            await v.apply(decisions)
        assert await view.status("é{}") == await memory.status("é{}")
        assert await view.history("é{}") == decisions
        assert await view.active() == await memory.active()
        assert await view.digest() == await memory.digest()
    finally:
        await client.aclose()


async def test_the_digest_notices_a_stray_active_set_member(redis_client, cleanup_prefix, log):
    view, memory = RedisView(redis_client, cleanup_prefix, "g1"), InMemoryView()
    for v in (view, memory):
        await v.apply([log("acct-1", "restricted", at=T0, scopes=["report"], seq=1)])
    assert await view.digest() == await memory.digest()
    await redis_client.zadd(view.keys.active, {"ghost": T0})
    assert await view.digest() != await memory.digest()


async def test_the_status_hash_is_readable_without_the_library(redis_client, cleanup_prefix, log):
    view = RedisView(redis_client, cleanup_prefix, "g1")
    await view.apply([log("acct-42", "restricted", at=T0, scopes=["add_friend"],
                          triggers=["friend_add_burst"], lift_at=T0 + 5)])
    raw = await redis_client.hgetall(f"{cleanup_prefix}:g1:acct:{{acct-42}}")
    assert {k.decode(): v.decode() for k, v in raw.items()} == {
        "account_id": "acct-42", "status": "restricted", "scopes": '["add_friend"]',
        "level": "1", "lift_at": str(T0 + 5), "triggers": '["friend_add_burst"]', "seq": "1",
        "type": "restricted", "reason": "", "at": str(T0), "since": str(T0),
        "appeal_pending": "0", "appeal_allowed_at": "",
    }
    assert await redis_client.zscore(f"{cleanup_prefix}:g1:active", "acct-42") == T0 + 5
