"""The operator CLI against a running worker: `account show` explains, operator commands only
publish to moderation-commands, and the worker turns them into decisions."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from harness import REPO, TopicReader, produce, running_worker, wait_for
from redis import Redis

from projections.client import SyncWardenClient

PARTITIONS = 3


def warden(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def emulator_signal(account: str, device: str) -> tuple[str, dict[str, object]]:
    return ("device-signals", {"event_id": f"sig-{uuid.uuid4()}", "ts": int(time.time() * 1000),
                               "account_id": account, "device_id": device, "emulator": True})


async def read_records(bootstrap: str, topic: str, done, *, timeout: float):  # type: ignore[no-untyped-def]
    """(key, value) of every record of `topic` from the beginning, until done(records)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[tuple[bytes | None, dict[str, object]]] = []
        deadline = time.monotonic() + timeout
        while not done(records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out reading {topic}: {records}")
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend((r.key, orjson.loads(r.value)) for r in batch)
        return records
    finally:
        await consumer.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory, kafka_bootstrap, redis_url):
    """A worker with two accounts restricted by a PC emulator sign-in, projected into Redis."""
    tmp = tmp_path_factory.mktemp("cli")
    uid = uuid.uuid4().hex[:10]
    env = {"WARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap, "WARDEN_REDIS_URL": redis_url,
           "WARDEN_TOPIC_PREFIX": f"{uid}-", "WARDEN_APP_ID": f"w{uid}",
           "WARDEN_REDIS_PREFIX": f"w{uid}", "WARDEN_PARTITIONS": str(PARTITIONS)}
    shown, wrongly = f"emu-{uid}", f"fp-{uid}"
    with running_worker(tmp, env) as worker:
        asyncio.run(produce(kafka_bootstrap, f"{uid}-", [emulator_signal(shown, "dev-emu-1"),
                                                         emulator_signal(wrongly, "dev-emu-2")]))
        client = SyncWardenClient(Redis.from_url(redis_url), prefix=f"w{uid}", pointer_ttl_s=0)
        wait_for(lambda: not client.is_allowed(shown, "add_friend")
                 and not client.is_allowed(wrongly, "add_friend"),
                 timeout=30, what="both emulator restrictions projected into Redis")
        yield {"env": {k: v for k, v in worker.env.items() if k.startswith("WARDEN_")},
               "uid": uid, "shown": shown, "wrongly": wrongly, "client": client,
               "bootstrap": kafka_bootstrap}
        client.close()


def test_account_show_explains_a_restriction_in_words(live):
    result = warden(live["env"], "account", "show", live["shown"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"account {live['shown']}: RESTRICTED at level 1" in out
    assert "limited features: add_friend, create_room, join_open_chat" in out
    assert "triggers:         emulator" in out
    assert "emulator: signed in from a PC emulator (device dev-emu-1)" in out


def test_account_show_json_is_the_status_and_the_decisions(live):
    result = warden(live["env"], "account", "show", live["shown"], "--json")
    assert result.returncode == 0, result.stderr
    body = orjson.loads(result.stdout)
    assert body["status"]["status"] == "restricted" and body["status"]["triggers"] == ["emulator"]
    assert [d["type"] for d in body["decisions"]] == ["restricted"]
    assert body["decisions"][0]["evidence"]["emulator"]["device_id"] == "dev-emu-1"


def test_account_show_of_an_unknown_account_exits_1_and_says_so(live):
    result = warden(live["env"], "account", "show", "nobody-at-all")
    assert result.returncode == 1
    assert "unknown account 'nobody-at-all'" in result.stderr and not result.stdout


def test_operator_commands_only_publish_to_moderation_commands(live):
    target = f"target-{live['uid']}"
    calls = {
        "lift": ["lift", target],
        "appeal_filed": ["appeal", "file", target],
        "granted": ["appeal", "decide", target, "--grant", "--note", "looks fine"],
        "denied": ["appeal", "decide", target, "--deny"],
        "restrict": ["restrict", target, "--scopes", "report,add_friend", "--duration", "36h",
                     "--note", "brigading"],
        "false_positive": ["false-positive", target],
    }
    ids = {}
    for name, argv in calls.items():
        result = warden(live["env"], *argv, "--actor", "op-7")
        assert result.returncode == 0, (name, result.stderr)
        ids[name] = result.stdout.strip()
        assert ids[name].startswith("cli-"), result.stdout
    topic = f"{live['uid']}-moderation-commands"
    records = asyncio.run(read_records(
        live["bootstrap"], topic,
        lambda rs: set(ids.values()) <= {v["command_id"] for _, v in rs}, timeout=30))
    by_id = {v["command_id"]: (key, v) for key, v in records}
    now = int(time.time() * 1000)
    for command_id in ids.values():
        key, value = by_id[command_id]
        assert key == target.encode()
        assert value["account_id"] == target and value["actor"] == "op-7"
        assert now - 120_000 < value["ts"] <= now
    assert by_id[ids["lift"]][1]["action"] == "lift"
    assert by_id[ids["appeal_filed"]][1]["action"] == "appeal_filed"
    assert by_id[ids["granted"]][1] | {"ts": 0} == {
        "command_id": ids["granted"], "ts": 0, "account_id": target, "actor": "op-7",
        "action": "appeal_decided", "granted": True, "note": "looks fine"}
    assert by_id[ids["denied"]][1]["granted"] is False
    restrict = by_id[ids["restrict"]][1]
    assert (restrict["action"], restrict["scopes"], restrict["duration_ms"], restrict["note"]) == (
        "restrict", ["report", "add_friend"], 36 * 3_600_000, "brigading")
    assert by_id[ids["false_positive"]][1]["action"] == "mark_false_positive"


@pytest.mark.parametrize(("argv", "code"), [
    (["restrict", "someone", "--scopes", "fly"], "invalid_enum"),
    (["restrict", "someone", "--scopes", ","], "invalid_value"),
    (["lift", "someone", "--actor", ""], "empty_id"),
    (["false-positive", "x" * 200], "id_too_long"),
])
def test_an_invalid_command_exits_2_with_the_decoders_error_code(live, argv, code):
    result = warden(live["env"], *argv)
    assert result.returncode == 2
    assert f"rejected: {code}:" in result.stderr and not result.stdout


def test_a_malformed_command_line_exits_2():
    assert warden({}, "appeal", "decide", "someone").returncode == 2  # --grant or --deny
    assert warden({}, "restrict", "someone", "--scopes", "report",
                  "--duration", "soon").returncode == 2


def test_the_worker_lifts_a_false_positive(live):
    account = live["wrongly"]
    result = warden(live["env"], "false-positive", account, "--actor", "op-9",
                    "--note", "emulator is our QA lab")
    assert result.returncode == 0, result.stderr
    reader = TopicReader(live["bootstrap"], f"{live['uid']}-account-decisions", PARTITIONS)

    def lifted(values):
        return [d for d in map(orjson.loads, values)
                if d["account_id"] == account and d["type"] == "lifted"]

    values = asyncio.run(reader.read_until(lambda v: bool(lifted(v)), timeout=30))
    (decision,) = lifted(values)
    assert (decision["reason"], decision["actor"], decision["scopes"]) == (
        "false_positive", "op-9", [])
    assert decision["evidence"]["false_positive"]["note"] == "emulator is our QA lab"
    wait_for(lambda: live["client"].is_allowed(account, "add_friend"), timeout=30,
             what="the lift projected into Redis")
    shown = warden(live["env"], "account", "show", account)
    assert "clear (every feature allowed)" in shown.stdout
    assert "lifted  (false_positive)  by op-9" in shown.stdout
