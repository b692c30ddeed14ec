"""Before the worker starts: every topic exists, and co-partitioned topics agree.

Faust would otherwise start against topics with the wrong partition count and
silently split an account's state; we stop with one clear error instead of a
crash loop (issue: "a clear startup error, not a crash loop").
"""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.settings import Settings


class TopologyError(RuntimeError):
    """Existing topics disagree with the configured partition count."""


async def partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for meta in await admin.describe_topics(names):
        name = meta.get("topic")
        if meta.get("error_code", 0) == 0 and meta.get("partitions"):
            counts[name] = len(meta["partitions"])
    return counts


async def ensure_topics(settings: Settings, *, timeout_s: float = 30.0) -> dict[str, int]:
    """Create missing topics with `settings.partitions`; raise on disagreement."""
    names = list(settings.topics.all)
    admin = AIOKafkaAdminClient(**settings.aiokafka_options(), request_timeout_ms=int(timeout_s * 1000))
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = await partition_counts(admin, names)
        wrong = {name: n for name, n in existing.items() if n != settings.partitions}
        if wrong:
            listed = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
            raise TopologyError(
                f"co-partitioned topics must all have WARDEN_PARTITIONS={settings.partitions} "
                f"partitions, but {listed}. Set WARDEN_PARTITIONS to match, or recreate the "
                f"topics (kafka-topics --alter can only add partitions, which re-keys accounts).")
        missing = [name for name in names if name not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(name, settings.partitions, 1) for name in missing])
            except TopicAlreadyExistsError:
                pass
        return {**existing, **{name: settings.partitions for name in missing}}
    finally:
        await admin.close()
