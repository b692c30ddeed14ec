"""When has a worker finished? When its consumer group has committed every topic it reads
up to the end: inputs, both inboxes (cross-key hops) and account-decisions (the projector).

The agents produce their outputs and wait for the broker's ack before an offset is committed,
so zero lag everywhere means every decision is on the log and in Redis. A condition to poll
with harness.wait_for, not a sleep.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from streams.topics import TopicNames


def worker_topics(prefix: str, app_id: str) -> list[str]:
    names = TopicNames(prefix, app_id)
    return [*names.account_sources, names.device_inbox, names.decisions]


LAST_LAG: dict[str, int] = {}  # the last non-zero lags seen, "topic[partition]" -> messages


async def group_lag(bootstrap: str, group: str, topics: list[str], partitions: int) -> int:
    """Messages on `topics` that `group` has not committed yet (end offset - committed)."""
    tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    lag = 0
    LAST_LAG.clear()
    for tp in tps:
        meta = committed.get(tp)
        behind = max(0, ends[tp] - (meta.offset if meta is not None and meta.offset >= 0 else 0))
        if behind:
            LAST_LAG[f"{tp.topic}[{tp.partition}]"] = behind
        lag += behind
    return lag


def drained(bootstrap: str, prefix: str, app_id: str, partitions: int) -> bool:
    topics = worker_topics(prefix, app_id)
    return asyncio.run(group_lag(bootstrap, app_id, topics, partitions)) == 0


def metrics_text(worker) -> str:  # type: ignore[no-untyped-def]
    """The worker's /metrics page (OSError while it does not answer, or answers an error)."""
    status, text = worker.http("/metrics")
    if status != 200:
        raise OSError(f"/metrics answered {status}")
    return text.decode() if isinstance(text, bytes) else str(text)


def metric_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples named `name` in a /metrics page: sorted labels -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def nothing_held(worker) -> bool:  # type: ignore[no-untyped-def]
    """No input waits in the worker's alignment buffer (README "Time"). Its offset is not
    committed before it is applied (the commit floor), so zero lag already says so; this is
    a second witness, from the worker's side."""
    try:
        text = metrics_text(worker)
    except OSError:
        return False
    return all(v == 0 for v in metric_samples(text, "warden_alignment_held").values())


def settled(worker, bootstrap: str, prefix: str, app_id: str, partitions: int) -> bool:  # type: ignore[no-untyped-def]
    """Drained twice around an empty alignment buffer: every input applied, every output
    consumed and projected."""
    return (drained(bootstrap, prefix, app_id, partitions) and nothing_held(worker)
            and drained(bootstrap, prefix, app_id, partitions))
