"""One hot account's backlog does not stop the worker: its changelog record stays small.

Before, an account's record kept every dedupe id of the 7-day horizon (at 53 bytes per
UUID-sized id, 20,000 events made a record over Kafka's 1 MB record limit), and every
input parked behind its cross-key replies (a backlog of one account parked thousands):
the changelog write failed (MessageSizeTooLargeError), the stages' agents crashed and
nothing more was applied. Now the ids kept are bounded (README "Decisions where the spec
is silent"), and an account with 2,000 inputs waiting pauses its partition's inputs
(`Warden._pace_inputs`)."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer
from drain import metric_samples, metrics_text, settled
from harness import produce, running_worker, wait_for

PARTITIONS = 2
EVENTS = 24_000
T0 = 1_767_225_600_000


def friend_add(uid: str, i: int, account: str) -> dict:
    """Ids of a UUID's length, one every 20 s (all of them within the 7-day horizon). From
    the account's device (a cross-key hop each), every 100th from none: it waits for the
    replies before it, and the inputs after it wait parked in the account's record."""
    device = {} if i % 100 == 0 else {"device_id": f"dev-{uid}"}
    return {"event_id": f"{uid}-{i:025d}", "ts": T0 + 20_000 * i, "account_id": account,
            "friend_id": f"friend-{i % 40}", **device}


def largest_changelog_value(bootstrap: str, topic: str) -> int:
    async def read() -> int:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    fetch_max_bytes=4 * 1024 * 1024)
        await consumer.start()
        try:
            largest, idle = 0, 0
            while idle < 3:
                batches = await consumer.getmany(timeout_ms=1000)
                idle = 0 if batches else idle + 1
                for records in batches.values():
                    largest = max([largest, *(len(r.value or b"") for r in records)])
            return largest
        finally:
            await consumer.stop()
    return asyncio.run(read())


def test_a_hot_accounts_record_stays_under_a_kafka_record_and_its_recent_repeats_are_ignored(
        tmp_path, kafka_bootstrap, redis_url):
    uid = uuid.uuid4().hex[:10]
    prefix, app_id = f"{uid}-", f"w{uid}"
    env = {"WARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap, "WARDEN_REDIS_URL": redis_url,
           "WARDEN_TOPIC_PREFIX": prefix, "WARDEN_APP_ID": app_id,
           "WARDEN_REDIS_PREFIX": app_id, "WARDEN_PARTITIONS": str(PARTITIONS)}
    account = f"hot-{uid}"
    inputs = [("friend-adds", friend_add(uid, i, account)) for i in range(EVENTS)]
    with running_worker(tmp_path, env) as worker:
        asyncio.run(produce(kafka_bootstrap, prefix, inputs))
        wait_for(lambda: settled(worker, kafka_bootstrap, prefix, app_id, PARTITIONS),
                 timeout=300, interval=2, what="every input applied")
        newest, oldest = inputs[-1][1], inputs[0][1]
        asyncio.run(produce(kafka_bootstrap, prefix, [("friend-adds", newest),
                                                      ("friend-adds", oldest)]))
        wait_for(lambda: settled(worker, kafka_bootstrap, prefix, app_id, PARTITIONS),
                 timeout=60, interval=1, what="the repeats applied")
        text = metrics_text(worker)
        events = metric_samples(text, "warden_events_total")[(("topic", "friend-adds"),)]
        duplicates = metric_samples(text, "warden_duplicate_events_total")
        redelivered = events - (EVENTS + 2)  # (by the consumer after a pause: at least once)
        print(f"\n{redelivered:.0f} inputs delivered twice")
        assert redelivered >= 0
        # each of those is a duplicate, and so is the repeated newest id; the oldest is past
        # the account's newest 4,096 ids, so it is applied again
        assert duplicates == {(("topic", "friend-adds"),): 1.0 + redelivered}
        assert worker.proc is not None and worker.proc.poll() is None and worker.starts == 1
        sizes = metric_samples(text, "warden_account_record_bytes_bucket")
        batches = metric_samples(text, "warden_account_record_bytes_count")[()]
        assert sizes[(("le", "4.194304e+06"),)] == batches  # (the alert's line: none past 4 MiB)
    largest = largest_changelog_value(kafka_bootstrap, f"{app_id}-accounts-changelog")
    print(f"\nlargest account record on the changelog: {largest:,} bytes")
    assert 0 < largest < 4 * 1024 * 1024  # (the alert's line; 4,096 ids of 53 bytes are 217 KB)
