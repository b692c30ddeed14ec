"""rebuild: replay into a fresh namespace, verify against the fold, switch readers, drop the old."""

from __future__ import annotations

import pytest

import projections.rebuild as rebuild_module
from projections.keys import Keys, pointer_key
from projections.rebuild import (
    RebuildVerificationError,
    current_namespace,
    drop_namespace,
    live_view,
    rebuild,
    switch_namespace,
)
from projections.redis_view import RedisView
from projections.view import InMemoryView

pytestmark = pytest.mark.integration
T0 = 1_767_225_600_000


async def stream(decisions, after=None):
    """An async iterator of decisions, like the Kafka reader; `after` runs once it is drained."""
    for d in decisions:
        yield d
    if after is not None:
        await after()


def story(log):
    return [
        log("acct-1", "restricted", at=T0, scopes=["add_friend"], triggers=["friend_add_burst"],
            lift_at=T0 + 100),
        log("acct-2", "restricted", at=T0 + 1, scopes=["report"], lift_at=None, level=4),
        log("acct-1", "extended", at=T0 + 2, scopes=["add_friend", "report"], lift_at=T0 + 200),
        log("acct-3", "reporter_penalized", at=T0 + 3, triggers=["reporter_penalty"]),
        log("acct-2", "appeal_received", at=T0 + 4, scopes=["report"], level=4),
        log("acct-1", "lifted", at=T0 + 200, reason="auto_quiet"),
    ]


async def keys_of(redis, prefix, namespace):
    return [k async for k in redis.scan_iter(match=Keys(prefix, namespace).all_pattern)]


async def test_rebuild_switches_readers_to_a_verified_copy_and_drops_the_old(
    redis_client, cleanup_prefix, log
):
    prefix, decisions = cleanup_prefix, story(log)
    live = await live_view(redis_client, prefix)
    await live.apply(decisions)
    live_digest, before = await live.digest(), await live.status("acct-2")

    report = await rebuild(stream(decisions), redis_client, prefix, batch_size=4,
                           retire_after_s=0)

    assert (report.old_namespace, report.new_namespace) == ("g0", "g1")
    assert (report.decisions, report.applied, report.skipped, report.accounts) == (6, 6, 0, 3)
    assert report.digest == live_digest
    assert await current_namespace(redis_client, prefix) == "g1"
    assert await keys_of(redis_client, prefix, "g0") == []
    assert report.removed_keys == 8  # 3 status hashes, 3 histories, 2 active zsets
    rebuilt = RedisView(redis_client, prefix, "g1")
    assert await rebuilt.digest() == live_digest
    assert await rebuilt.status("acct-2") == before
    assert await live.status("acct-2") is None  # the old namespace is gone


async def test_rebuild_of_a_redelivered_log_counts_the_duplicates_as_skipped(
    redis_client, cleanup_prefix, log
):
    decisions = story(log)
    report = await rebuild(stream(decisions + decisions[:3]), redis_client, cleanup_prefix,
                           retire_after_s=0)
    expected = InMemoryView()
    await expected.apply(decisions)
    assert (report.decisions, report.applied, report.skipped) == (9, 6, 3)
    assert report.old_namespace is None  # a Redis that was never projected
    assert report.digest == await expected.digest()


async def test_a_failed_verification_leaves_readers_on_the_old_namespace(
    redis_client, cleanup_prefix, log
):
    prefix, decisions = cleanup_prefix, story(log)
    live = await live_view(redis_client, prefix)
    await live.apply(decisions)

    async def corrupt_the_copy():  # e.g. a stray writer touching the fresh namespace
        fresh = f"g{int(await redis_client.get(f'{prefix}:generation'))}"
        await redis_client.hset(Keys(prefix, fresh).acct("acct-2"), "level", "1")

    with pytest.raises(RebuildVerificationError) as failure:
        # batch_size 2: every batch is written before the iterator is drained
        await rebuild(stream(decisions, after=corrupt_the_copy), redis_client, prefix,
                      batch_size=2, retire_after_s=0)
    assert failure.value.namespace == "g1"
    assert failure.value.expected != failure.value.actual
    assert await current_namespace(redis_client, prefix) == "g0"
    assert await live.digest() == (await rebuild_digest(decisions))
    assert await keys_of(redis_client, prefix, "g1") != []  # kept for inspection
    assert await drop_namespace(redis_client, prefix, "g1") > 0


async def rebuild_digest(decisions):
    expected = InMemoryView()
    await expected.apply(decisions)
    return await expected.digest()


async def test_rebuild_does_not_overwrite_a_switch_made_meanwhile(
    redis_client, cleanup_prefix, log
):
    prefix = cleanup_prefix
    await live_view(redis_client, prefix)

    async def someone_else_switches():
        assert await switch_namespace(redis_client, prefix, "g0", "other")

    with pytest.raises(RuntimeError, match="another rebuild switched first"):
        await rebuild(stream(story(log), after=someone_else_switches), redis_client, prefix,
                      retire_after_s=0)
    assert await redis_client.get(pointer_key(prefix)) == b"other"


async def test_the_old_namespace_stays_readable_during_the_grace_period(
    redis_client, cleanup_prefix, log, monkeypatch
):
    prefix, decisions = cleanup_prefix, story(log)
    await (await live_view(redis_client, prefix)).apply(decisions)
    seen = []

    async def grace(seconds):  # no real sleep: check the state while it would be waiting
        seen.append((seconds, await current_namespace(redis_client, prefix),
                     len(await keys_of(redis_client, prefix, "g0"))))

    monkeypatch.setattr(rebuild_module, "sleep", grace)
    await rebuild(stream(decisions), redis_client, prefix, retire_after_s=2.0)
    assert seen == [(2.0, "g1", 8)]
    assert await keys_of(redis_client, prefix, "g0") == []


async def test_dropping_a_namespace_touches_nothing_else(redis_client, cleanup_prefix, log):
    prefix = cleanup_prefix
    # a glob-looking prefix must match literally, and g1 must not match g10
    for p, ns in [(f"{prefix}*", "g1"), (prefix, "g1"), (prefix, "g10"), (f"{prefix}x", "g1")]:
        await RedisView(redis_client, p, ns).apply([log("a", "restricted", at=T0,
                                                        scopes=["report"], seq=1)])
    assert await drop_namespace(redis_client, f"{prefix}*", "g1") == 4
    for p, ns in [(prefix, "g1"), (prefix, "g10"), (f"{prefix}x", "g1")]:
        assert len(await keys_of(redis_client, p, ns)) == 4
