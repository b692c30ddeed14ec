"""`warden projections rebuild` on the real services: Redis is rebuilt from account-decisions
alone, verified, switched atomically, and the live worker keeps projecting into the new copy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import orjson
import pytest
from drain import settled
from harness import REPO, produce, produce_raw, running_worker, wait_for
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from projections.client import SyncWardenClient
from projections.rebuild import current_namespace
from projections.redis_view import RedisView
from projections.view import InMemoryView
from streams import simulate
from streams.preflight import ensure_topics
from streams.rebuild_cmd import DecisionLog, rebuild_from_log
from streams.settings import Settings

PARTITIONS = 3


def warden(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=120)


def expected_digest(decisions: list[dict[str, object]]) -> str:
    view = InMemoryView()
    view.apply_now(decisions)
    return view.digest_now()


def redis_digest(redis_url: str, prefix: str) -> tuple[str | None, str | None]:
    """(live namespace, its digest), or (None, None) before any projection."""
    async def read() -> tuple[str | None, str | None]:
        redis = AsyncRedis.from_url(redis_url)
        try:
            namespace = await current_namespace(redis, prefix)
            if namespace is None:
                return None, None
            return namespace, await RedisView(redis, prefix, namespace).digest()
        finally:
            await redis.aclose()

    return asyncio.run(read())


def latest_per_account(decisions: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    latest: dict[str, dict[str, object]] = {}
    for d in decisions:
        account = str(d["account_id"])
        if account not in latest or int(d["seq"]) > int(latest[account]["seq"]):  # type: ignore[call-overload]
            latest[account] = d
    return latest


@pytest.fixture(scope="module")
def live(tmp_path_factory, kafka_bootstrap, redis_url):
    tmp = tmp_path_factory.mktemp("rebuild")
    uid = uuid.uuid4().hex[:10]
    env = {"WARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap, "WARDEN_REDIS_URL": redis_url,
           "WARDEN_TOPIC_PREFIX": f"{uid}-", "WARDEN_APP_ID": f"w{uid}",
           "WARDEN_REDIS_PREFIX": f"w{uid}", "WARDEN_PARTITIONS": str(PARTITIONS),
           "WARDEN_IDLE_ADVANCE": "false"}
    workload = list(simulate.generate(accounts=200, events=3000, seed=5, days=3))
    with running_worker(tmp, env) as worker:
        asyncio.run(produce(kafka_bootstrap, f"{uid}-", workload, rate=1000))
        wait_for(lambda: settled(worker, kafka_bootstrap, f"{uid}-", f"w{uid}", PARTITIONS), timeout=60,
                 interval=1.0, what="the worker consumed and projected everything")
        settings = Settings.from_env({k: v for k, v in worker.env.items()
                                      if k.startswith("WARDEN_")})
        decisions = asyncio.run(read_log(settings))
        assert len(decisions) > 20
        assert redis_digest(redis_url, f"w{uid}")[1] == expected_digest(decisions)
        yield {"env": {k: v for k, v in worker.env.items() if k.startswith("WARDEN_")},
               "uid": uid, "prefix": f"w{uid}", "decisions": decisions,
               "redis_url": redis_url, "bootstrap": kafka_bootstrap}


async def read_log(settings: Settings) -> list[dict[str, object]]:
    """account-decisions from the beginning to the end offsets now."""
    log = DecisionLog(settings)
    try:
        await log.start()
        return [d async for d in log.read(await log.beginning(), await log.end())]
    finally:
        await log.stop()


def restricted_and_clear(decisions):  # type: ignore[no-untyped-def]
    latest = latest_per_account(decisions)
    restricted = [(a, d["scopes"][0]) for a, d in latest.items() if d["scopes"]]
    clear = [a for a, d in latest.items() if not d["scopes"]]
    assert restricted and clear
    return restricted, clear


def test_rebuild_restores_a_wiped_read_model_from_the_log(live):
    prefix, redis_url = live["prefix"], live["redis_url"]
    restricted, clear = restricted_and_clear(live["decisions"])
    redis = Redis.from_url(redis_url)
    client = SyncWardenClient(redis, prefix=prefix, pointer_ttl_s=0)
    try:
        wiped = [key for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
        assert wiped and redis.unlink(*wiped) == len(wiped)
        assert all(client.is_allowed(a, scope) for a, scope in restricted)  # fail-open: gone

        result = warden(live["env"], "projections", "rebuild", "--batch", "250")
        assert result.returncode == 0, result.stderr
        want = expected_digest(live["decisions"])
        namespace, got = redis_digest(redis_url, prefix)
        assert got == want
        assert f"digest          {want}" in result.stdout
        assert f"accounts        {len(latest_per_account(live['decisions'])):,}" in result.stdout
        assert f"-> {namespace}" in result.stdout
        assert not any(client.is_allowed(a, scope) for a, scope in restricted)
        assert all(client.is_allowed(a, "add_friend") for a in clear)
    finally:
        redis.close()


def test_rebuild_switches_readers_and_the_worker_follows_the_new_namespace(live):
    prefix, redis_url = live["prefix"], live["redis_url"]
    redis = Redis.from_url(redis_url)
    client = SyncWardenClient(redis, prefix=prefix, pointer_ttl_s=0)
    try:
        old, _ = redis_digest(redis_url, prefix)
        result = warden(live["env"], "projections", "rebuild")
        assert result.returncode == 0, result.stderr
        new, got = redis_digest(redis_url, prefix)
        assert new != old and f"{old} -> {new}" in result.stdout
        assert got == expected_digest(live["decisions"])
        assert not list(redis.scan_iter(match=f"{prefix}:{old}:*"))  # old copy retired

        newcomer = f"late-{uuid.uuid4().hex[:8]}"
        signal = ("device-signals", {"event_id": f"late-{newcomer}", "ts": int(time.time() * 1000),
                                     "account_id": newcomer, "device_id": f"dev-{newcomer}",
                                     "emulator": True})
        asyncio.run(produce(live["bootstrap"], f"{live['uid']}-", [signal]))
        wait_for(lambda: not client.is_allowed(newcomer, "add_friend"), timeout=30,
                 what="a decision made after the rebuild projected into the new namespace")
        assert redis.exists(f"{prefix}:{new}:acct:{{{newcomer}}}")
    finally:
        redis.close()


def _decision(account: str, seq: int, at: int) -> dict[str, object]:
    return {"decision_id": f"{account}:{seq}", "account_id": account, "seq": seq,
            "type": "restricted", "at": at, "scopes": ["report"], "triggers": [], "level": 1,
            "lift_at": None, "reason": "manual", "actor": "op", "evidence": {},
            "policy_version": "test"}


async def test_decisions_appended_while_rebuilding_are_caught_up_into_the_new_namespace(
        kafka_bootstrap, redis_url, unique_id):
    """No live projector here: only the catch-up can bring the late decisions over."""
    settings = Settings.from_env({"WARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap,
                                  "WARDEN_REDIS_URL": redis_url,
                                  "WARDEN_TOPIC_PREFIX": f"{unique_id}-",
                                  "WARDEN_APP_ID": unique_id, "WARDEN_REDIS_PREFIX": unique_id,
                                  "WARDEN_PARTITIONS": str(PARTITIONS)})
    await ensure_topics(settings)
    topic = settings.topics.decisions
    early = [_decision(f"early-{i}", 1, 1000 + i) for i in range(20)]
    await produce_raw(kafka_bootstrap, topic, [(str(d["account_id"]).encode(), orjson.dumps(d))
                                               for d in early])
    redis = AsyncRedis.from_url(redis_url)
    try:
        rebuilding = asyncio.create_task(rebuild_from_log(settings, batch=7, retire_after_s=3.0))
        deadline = time.monotonic() + 30
        while await current_namespace(redis, unique_id) in (None, "g0"):  # switched?
            assert time.monotonic() < deadline and not rebuilding.done()
            await asyncio.sleep(0.05)
        late = [_decision("early-0", 2, 5000), _decision("late-1", 1, 5001)]
        await produce_raw(kafka_bootstrap, topic, [(str(d["account_id"]).encode(),
                                                    orjson.dumps(d)) for d in late])
        outcome = await rebuilding
        assert (outcome.report.decisions, outcome.caught_up, outcome.caught_up_applied) == (
            20, 2, 2)
        view = RedisView(redis, unique_id, outcome.report.new_namespace)
        assert await view.digest() == expected_digest([*early, *late])
        assert (await view.status("early-0")).seq == 2  # type: ignore[union-attr]
    finally:
        await redis.aclose()
