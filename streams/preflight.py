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
    """Partition counts of those of `names` that exist.

    Lists topics first: describing a missing topic would make a broker with
    auto-creation enabled create it, with its default partition count.
    """
    present = set(await admin.list_topics())
    wanted = [name for name in names if name in present]
    counts: dict[str, int] = {}
    if wanted:
        for meta in await admin.describe_topics(wanted):
            counts[meta["topic"]] = len(meta.get("partitions") or ())
    return counts


def _check(counts: dict[str, int], partitions: int) -> None:
    wrong = {name: n for name, n in counts.items() if n != partitions}
    if wrong:
        listed = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        raise TopologyError(
            f"co-partitioned topics must all have WARDEN_PARTITIONS={partitions} partitions, "
            f"but {listed}. Set WARDEN_PARTITIONS to match, or recreate the topics "
            f"(adding partitions re-keys accounts onto other partitions).")


async def ensure_topics(settings: Settings, *, timeout_s: float = 30.0) -> dict[str, int]:
    """Create missing topics with `settings.partitions`; raise on disagreement."""
    names = list(settings.topics.all)
    admin = AIOKafkaAdminClient(**settings.aiokafka_options(),
                                request_timeout_ms=int(timeout_s * 1000))
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = await partition_counts(admin, names)
        _check(existing, settings.partitions)
        missing = [name for name in names if name not in existing]
        if missing:
            try:
                await admin.create_topics(
                    [NewTopic(name, settings.partitions, 1) for name in missing])
            except TopicAlreadyExistsError:
                pass  # created concurrently (another worker); verified below
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            counts = await partition_counts(admin, names)
            if len(counts) == len(names) and all(counts.values()):
                break
            if asyncio.get_running_loop().time() > deadline:
                absent = sorted(set(names) - set(counts))
                raise TopologyError(f"topics not available after creation: {', '.join(absent)}")
            await asyncio.sleep(0.2)
        _check(counts, settings.partitions)
        return counts
    finally:
        await admin.close()
