"""The downstream client, async and sync: one round trip per call, follows rebuild switches."""

from __future__ import annotations

import inspect

import pytest
import redis

from projections.client import SyncWardenClient, WardenClient
from projections.rebuild import live_view, rebuild
from projections.view import FEATURES

pytestmark = pytest.mark.integration
T0 = 1_767_225_600_000


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def call(result):
    """Lets one test body drive both clients."""
    return await result if inspect.isawaitable(result) else result


@pytest.fixture(params=["async", "sync"])
def make_client(request, redis_client, redis_url, cleanup_prefix):
    made = []

    def make(**kwargs):
        if request.param == "async":
            client = WardenClient(redis_client, cleanup_prefix, **kwargs)
        else:
            client = SyncWardenClient(redis.Redis.from_url(redis_url), cleanup_prefix, **kwargs)
            made.append(client)
        return client

    yield make
    for client in made:
        client.close()


async def test_is_allowed_limits_only_the_restricted_features(make_client, redis_client,
                                                              cleanup_prefix, log):
    view = await live_view(redis_client, cleanup_prefix)
    await view.apply([log("acct-1", "restricted", at=T0, scopes=["add_friend", "join_open_chat"],
                          triggers=["emulator"], lift_at=T0 + 5)])
    client = make_client()
    assert not await call(client.is_allowed("acct-1", "add_friend"))
    assert not await call(client.is_allowed("acct-1", "join_open_chat"))
    assert await call(client.is_allowed("acct-1", "report"))
    assert await call(client.is_allowed("somebody-else", "add_friend"))

    await view.apply([log("acct-1", "lifted", at=T0 + 5, reason="auto_quiet")])
    assert await call(client.is_allowed("acct-1", "add_friend"))


async def test_status_is_the_wire_form_or_none(make_client, redis_client, cleanup_prefix, log):
    view = await live_view(redis_client, cleanup_prefix)
    await view.apply([log("}odd{", "restricted", at=T0, scopes=["report"],
                          triggers=["reporter_penalty"], level=4)])
    client = make_client()
    assert await call(client.status("}odd{")) == {
        "account_id": "}odd{", "status": "restricted", "scopes": ["report"], "level": 4,
        "lift_at": None, "triggers": ["reporter_penalty"], "seq": 1, "type": "restricted",
        "reason": None, "at": T0, "since": T0, "appeal_pending": False, "appeal_allowed_at": None,
    }
    assert await call(client.status("nobody")) is None


async def test_an_unknown_feature_is_an_error_naming_the_valid_ones(make_client):
    client = make_client()
    with pytest.raises(ValueError, match="valid features: " + ", ".join(FEATURES)):
        await call(client.is_allowed("acct-1", "fly"))


async def test_a_never_projected_redis_allows_everything(make_client):
    client = make_client()
    assert await call(client.is_allowed("acct-1", "add_friend"))
    assert await call(client.status("acct-1")) is None


async def test_a_steady_state_call_is_one_round_trip(make_client, redis_client, cleanup_prefix,
                                                     log):
    await live_view(redis_client, cleanup_prefix)
    clock = FakeClock()
    client = make_client(clock=clock)
    await call(client.is_allowed("acct-1", "add_friend"))  # reads the pointer
    sent = []
    original = client.redis.execute_command

    def counting(*args, **kwargs):
        sent.append(args[0])
        return original(*args, **kwargs)

    client.redis.execute_command = counting
    try:
        await call(client.is_allowed("acct-1", "add_friend"))
        await call(client.status("acct-1"))
        assert sent == ["HMGET", "HGETALL"]
        clock.now += 1.5  # pointer TTL passed: one extra GET
        await call(client.is_allowed("acct-1", "add_friend"))
        assert sent == ["HMGET", "HGETALL", "GET", "HMGET"]
    finally:
        del client.redis.execute_command


async def test_the_client_follows_a_rebuild_after_its_pointer_ttl(
    make_client, redis_client, cleanup_prefix, log
):
    restricted = log("acct-1", "restricted", at=T0, scopes=["add_friend"], lift_at=T0 + 5)
    extended = log("acct-1", "extended", at=T0 + 1, scopes=["add_friend", "report"],
                   lift_at=T0 + 9)
    # the live namespace missed `extended` (say, written before a Redis data loss)
    await (await live_view(redis_client, cleanup_prefix)).apply([restricted])
    clock = FakeClock()
    client = make_client(clock=clock, pointer_ttl_s=1.0)
    assert await call(client.is_allowed("acct-1", "report"))

    async def log_stream():
        for d in (restricted, extended):
            yield d

    report = await rebuild(log_stream(), redis_client, cleanup_prefix, retire_after_s=0)
    clock.now += 0.5
    # still within the TTL: the cached (here already dropped) namespace is read
    assert await call(client.is_allowed("acct-1", "report"))
    clock.now += 0.6
    assert not await call(client.is_allowed("acct-1", "report"))
    assert (await call(client.status("acct-1")))["seq"] == 2
    assert await call(client.refresh()) == report.new_namespace


async def test_refresh_follows_a_switch_at_once(make_client, redis_client, cleanup_prefix, log):
    await live_view(redis_client, cleanup_prefix)
    client = make_client(clock=FakeClock())
    assert await call(client.is_allowed("acct-1", "report"))

    async def log_stream():
        yield log("acct-1", "restricted", at=T0, scopes=["report"])

    report = await rebuild(log_stream(), redis_client, cleanup_prefix, retire_after_s=0)
    assert await call(client.refresh()) == report.new_namespace
    assert not await call(client.is_allowed("acct-1", "report"))
