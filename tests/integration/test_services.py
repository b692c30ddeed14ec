"""The services the repo starts are the real thing: an Apache Kafka 4.x broker and a Redis."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

DEADLINE_S = 30.0
FETCH_API_KEY = 1


def _services_module():  # type: ignore[no-untyped-def]
    path = Path(__file__).resolve().parents[2] / "scripts" / "services.py"
    spec = importlib.util.spec_from_file_location("warden_services_for_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_broker_speaks_kafka_4_protocol(kafka_bootstrap: str) -> None:
    # Kafka 4.0 removed Fetch v0-3 (KIP-896); any 3.x broker still advertises v0.
    port = int(kafka_bootstrap.rsplit(":", 1)[1])
    versions = _services_module().kafka_api_versions(port)
    fetch_min, _fetch_max = versions[FETCH_API_KEY]
    assert fetch_min >= 4, versions[FETCH_API_KEY]


async def test_topic_created_by_admin_carries_a_message_to_a_group_consumer(
    kafka_bootstrap: str, unique_id: str
) -> None:
    topic = f"{unique_id}-roundtrip"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        async with asyncio.timeout(DEADLINE_S):
            await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
            while topic not in await admin.list_topics():
                await asyncio.sleep(0.05)
    finally:
        await admin.close()

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        async with asyncio.timeout(DEADLINE_S):
            sent = await producer.send_and_wait(topic, b'{"hello": "warden"}', key=b"acct-1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{unique_id}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(DEADLINE_S):
            received = await consumer.getone()
            await consumer.commit()
    finally:
        await consumer.stop()

    assert (received.key, received.value) == (b"acct-1", b'{"hello": "warden"}')
    assert (received.partition, received.offset) == (sent.partition, sent.offset)


async def test_redis_answers_ping_and_keeps_what_is_set(redis_url: str, unique_id: str) -> None:
    client = aioredis.from_url(redis_url)
    key = f"{unique_id}:greeting"
    try:
        async with asyncio.timeout(DEADLINE_S):
            assert await client.ping() is True
            await client.set(key, "hello", ex=60)
            assert await client.get(key) == b"hello"
            await client.delete(key)
    finally:
        await client.aclose()


def test_a_cluster_id_never_starts_with_a_dash(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A random id starting with '-' read as an option to kafka-storage and failed a fresh CI
    run (about 1 format in 64); ids are drawn again, as Kafka's own Uuid.randomUuid does."""
    import uuid

    services = _services_module()
    draws = iter([uuid.UUID(bytes=b"\xfb" + bytes(15)), uuid.UUID(bytes=bytes(16))])
    monkeypatch.setattr(services.uuid, "uuid4", lambda: next(draws))
    ran: list[list[str]] = []
    monkeypatch.setattr(services, "_run", lambda cmd, *a, **k: ran.append(cmd))
    services._format_kafka(tmp_path / "server.properties", tmp_path)
    (arg,) = [a for a in ran[0] if a.startswith("--cluster-id=")]
    assert arg == "--cluster-id=AAAAAAAAAAAAAAAAAAAAAA"
