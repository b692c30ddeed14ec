"""Lifts happen on time without traffic: an idle partition advances its clock from the wall
clock (SPEC "Time and determinism"), so a quiet account is lifted at exactly its `lift_at`."""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
from harness import TopicReader, produce, running_worker, wait_for
from redis import Redis

from projections.client import SyncWardenClient

PARTITIONS = 3
QUIET_MS = 8000
POLICY = f"""
[lifecycle]
quiet_base_ms = {QUIET_MS}
"""


def test_an_idle_account_is_lifted_at_lift_at_by_the_wall_clock(tmp_path, kafka_bootstrap,
                                                                 redis_url):
    uid = uuid.uuid4().hex[:10]
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    env = {"WARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap, "WARDEN_REDIS_URL": redis_url,
           "WARDEN_TOPIC_PREFIX": f"{uid}-", "WARDEN_APP_ID": f"w{uid}",
           "WARDEN_REDIS_PREFIX": f"w{uid}", "WARDEN_PARTITIONS": str(PARTITIONS),
           "WARDEN_POLICY": str(policy), "WARDEN_IDLE_ADVANCE": "true",
           "WARDEN_IDLE_GRACE_MS": "1000"}
    account = f"quiet-{uid}"
    client = SyncWardenClient(Redis.from_url(redis_url), prefix=f"w{uid}", pointer_ttl_s=0)
    try:
        with running_worker(tmp_path, env):
            signal = {"event_id": f"emu-{uid}", "ts": int(time.time() * 1000),  # now
                      "account_id": account, "device_id": f"dev-{uid}", "emulator": True}
            asyncio.run(produce(kafka_bootstrap, f"{uid}-", [("device-signals", signal)]))
            wait_for(lambda: not client.is_allowed(account, "join_open_chat"), timeout=20,
                     what="the emulator restriction projected")
            # nothing else is produced: only the idle clock can lift it
            reader = TopicReader(kafka_bootstrap, f"{uid}-account-decisions", PARTITIONS)
            values = asyncio.run(reader.read_until(lambda v: len(v) >= 2, timeout=40))
            restricted, lifted = (orjson.loads(v) for v in values)
            assert (restricted["type"], restricted["triggers"]) == ("restricted", ["emulator"])
            assert restricted["lift_at"] == signal["ts"] + QUIET_MS
            assert (lifted["type"], lifted["reason"], lifted["seq"]) == ("lifted", "auto_quiet", 2)
            assert lifted["at"] == restricted["lift_at"] and lifted["scopes"] == []
            late_ms = time.time() * 1000 - restricted["lift_at"]
            assert 0 <= late_ms < 10_000  # never early; grace 1 s + tick 1 s + a round trip
            wait_for(lambda: client.is_allowed(account, "join_open_chat"), timeout=10,
                     what="the lift projected into Redis")
    finally:
        client.close()
