"""streams/app.py: a stage's batches and its sweeps write its tables one at a time.

A sweep reads records and writes pruned copies of them; writing waits first for the
previous commit's changelog sends. A batch written during that wait was overwritten
by the copy from before it, its inputs' effects lost (the two-worker test's account
that missed a decision, README "Reliability")."""

from __future__ import annotations

import asyncio

import pytest

from streams import app as app_module
from streams.app import Warden
from streams.records import Batch, Output
from streams.settings import Settings

KEY = b"acct-1"


@pytest.fixture
def warden(monkeypatch):
    monkeypatch.setenv("WARDEN_TOPIC_PREFIX", "app-")
    monkeypatch.setenv("WARDEN_PARTITIONS", "1")
    monkeypatch.setattr(Warden, "recovered", property(lambda self: True))
    warden = Warden(Settings.from_env())
    monkeypatch.setattr(warden, "_assigned_account_partitions", lambda: [0])
    monkeypatch.setattr(warden, "_assigned_device_partitions", lambda: [0])
    monkeypatch.setattr(warden, "_aiokafka_producer", lambda: None)

    async def sent_at_once(producer, records):
        list(records)
        return []

    monkeypatch.setattr(app_module, "send_batched", sent_at_once)
    return warden


def test_a_sweep_during_a_batchs_produce_prunes_the_batchs_record_not_the_one_before_it(
        warden, monkeypatch):
    accounts = warden.accounts.data
    accounts[KEY] = b"before"

    def the_batch(records):  # the batch's outputs are produced before its state is written
        return Batch(outputs=[Output("decisions", KEY, b"decided")],
                     writes={("accounts", KEY): (0, accounts[KEY] + b"+input")})

    def pruning(*, assigned):
        return Batch(writes={("accounts", KEY): (0, accounts[KEY] + b"+pruned")})

    monkeypatch.setattr(warden.account_stage, "process", the_batch)
    monkeypatch.setattr(warden.account_stage, "sweep", pruning)
    monkeypatch.setattr(warden.device_stage, "sweep", lambda **kw: Batch())

    async def scenario():
        delivered = asyncio.Event()
        previous_sends = asyncio.get_running_loop().create_future()
        warden._changelog_sent = [previous_sends]  # the commit before: not acked yet

        async def produce(outputs):
            if outputs:
                await delivered.wait()

        monkeypatch.setattr(warden, "produce", produce)
        batch = asyncio.create_task(warden.handle_account_batch([]))
        await asyncio.sleep(0)  # the batch's outputs are on their way
        sweep = asyncio.create_task(warden.sweep())
        await asyncio.sleep(0)
        delivered.set()
        await asyncio.sleep(0)
        previous_sends.set_result(None)
        await asyncio.gather(batch, sweep)

    asyncio.run(scenario())
    assert accounts[KEY] == b"before+input+pruned"


def test_a_revocation_waits_for_a_sweep_under_way_and_flushes_its_writes(warden, monkeypatch):
    """Otherwise its writes reach a changelog partition after its new owner recovered it,
    as the newest value of the next recovery there."""
    order = []

    async def slow_commit(batch):
        order.append("sweep begins")
        await asyncio.sleep(0.01)
        order.append("sweep written")

    async def flush():
        order.append("flushed")

    monkeypatch.setattr(warden, "commit", slow_commit)
    monkeypatch.setattr(warden.app.producer, "flush", flush)

    async def scenario():
        sweep = asyncio.create_task(warden.sweep())
        await asyncio.sleep(0)
        await warden.app.on_partitions_revoked.send(set())
        await sweep

    asyncio.run(scenario())
    assert order == ["sweep begins", "sweep written"] * 2 + ["flushed"]  # (both stages)


def test_each_batch_records_how_long_its_oldest_record_of_each_source_waited(warden, monkeypatch):
    """`warden_record_wait_seconds`: the Kafka timestamp of each source's oldest record in a
    batch against the time the stage took it, one observation per batch and source."""
    class Message:
        def __init__(self, topic, timestamp):
            self.topic, self.timestamp = topic, timestamp

    names = warden.settings.topics
    monkeypatch.setattr(app_module.time, "time", lambda: 100.0)
    warden._record_waits("account", [Message(names.input("friend-adds"), 99.9),
                                     Message(names.input("device-signals"), 99.7),
                                     Message(names.account_inbox, 99.95),
                                     Message(names.account_inbox, None)])
    registry = warden.registry

    def observed(source):
        labels = {"stage": "account", "source": source}
        return (registry.get_sample_value("warden_record_wait_seconds_count", labels),
                round(registry.get_sample_value("warden_record_wait_seconds_sum", labels), 3))

    assert observed("inputs") == (1, 0.3)
    assert observed("account-inbox") == (1, 0.05)


def test_the_tables_changelogs_and_the_producer_take_records_past_kafkas_1_mb_default(warden):
    """An account's record holds the inputs parked behind its replies: a hot account's
    backlog made one of 1.4 MB (tests/integration/test_hot_account.py)."""
    assert warden.app.conf.producer_max_request_size == app_module.RECORD_MAX_BYTES
    for table in (warden.accounts, warden.clocks, warden.devices, warden.device_held):
        config = table.changelog_topic.config
        assert config["max.message.bytes"] == str(app_module.RECORD_MAX_BYTES)
