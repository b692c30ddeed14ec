"""`warden projections rebuild [--batch N]`: rebuild the Redis read model from `account-decisions`.

Reads the log from offset 0 to the end offsets captured at start (then
chases the end a few times while the worker keeps writing), hands the
decisions to projections.rebuild.rebuild (fresh namespace, digest check,
atomic pointer switch), and finally CATCHES UP: decisions appended between
the last read and the switch may have been projected by a live worker into
the old namespace only, so everything from the last read position to the
current end is applied to the new one. The apply script skips what the
projector already wrote there (seq check), so the overlap is harmless.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from projections.rebuild import RebuildReport, RebuildVerificationError, ensure_namespace, rebuild
from projections.redis_view import RedisView
from streams.admin import MissingTopic
from streams.logsafe import safe
from streams.preflight import partition_counts
from streams.settings import Settings, SettingsError

Offsets = dict[TopicPartition, int]
CHASE_ROUNDS = 3      # re-read the end this often before switching (narrows the catch-up)
STALL_S = 30.0        # no progress towards the end offsets for this long: give up


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="projections_command", required=True, metavar="ACTION")
    cmd = sub.add_parser("rebuild", help="replay account-decisions into a fresh namespace, "
                                         "verify, switch readers, catch up")
    cmd.add_argument("--batch", type=int, default=1000, help="decisions per Redis round trip")
    cmd.add_argument("--retire-after", type=float, default=2.0, metavar="SECONDS",
                     help="wait before dropping the old namespace (clients cache the pointer 1 s)")


@dataclass(frozen=True, slots=True)
class Outcome:
    report: RebuildReport
    topic: str
    caught_up: int
    caught_up_applied: int
    seconds: float


class DecisionLog:
    """Reads ranges of `account-decisions` with one manually assigned consumer."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topics.decisions
        self.partitions: list[TopicPartition] = []
        self._consumer: AIOKafkaConsumer | None = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "DecisionLog.start() first"
        return self._consumer

    async def start(self) -> None:
        admin = AIOKafkaAdminClient(**self.settings.aiokafka_options())
        await admin.start()
        try:
            count = (await partition_counts(admin, [self.topic])).get(self.topic)
        finally:
            await admin.close()
        if not count:  # reading nothing would switch readers to an empty namespace
            raise MissingTopic(self.topic)
        self.partitions = [TopicPartition(self.topic, p) for p in range(count)]
        self._consumer = AIOKafkaConsumer(**self.settings.aiokafka_options(), group_id=None,
                                          enable_auto_commit=False, auto_offset_reset="earliest")
        await self._consumer.start()
        self._consumer.assign(self.partitions)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def beginning(self) -> Offsets:
        return dict(await self.consumer.beginning_offsets(self.partitions))

    async def end(self) -> Offsets:
        return dict(await self.consumer.end_offsets(self.partitions))

    async def read(self, start: Offsets, end: Offsets) -> AsyncIterator[dict[str, Any]]:
        """Every decision at offsets [start, end) per partition (partition order kept)."""
        remaining = {tp for tp in self.partitions if start[tp] < end[tp]}
        for tp in remaining:
            self.consumer.seek(tp, start[tp])
        last_progress = time.monotonic()
        while remaining:
            batch = await self.consumer.getmany(*remaining, timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= end[tp]:
                        break
                    if record.value is not None:
                        yield orjson.loads(record.value)
                last_progress = time.monotonic()
            for tp in list(remaining):
                if await self.consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
            if remaining and time.monotonic() - last_progress > STALL_S:
                raise TimeoutError(f"no progress reading {self.topic} for {STALL_S:.0f} s")


async def rebuild_from_log(settings: Settings, *, batch: int,
                           retire_after_s: float = 2.0) -> Outcome:
    started = time.monotonic()
    log = DecisionLog(settings)
    redis = Redis.from_url(settings.redis_url, **settings.redis_options())
    try:
        await log.start()
        # a pointer must exist before we switch it: otherwise a live projector's
        # ensure_namespace() could create one meanwhile and make the switch fail
        await ensure_namespace(redis, settings.redis_prefix)
        position = await log.beginning()

        async def decisions() -> AsyncIterator[dict[str, Any]]:
            nonlocal position
            for _ in range(1 + CHASE_ROUNDS):
                end = await log.end()
                if end == position:
                    return
                async for decision in log.read(position, end):
                    yield decision
                position = end

        report = await rebuild(decisions(), redis, settings.redis_prefix, batch_size=batch,
                               retire_after_s=retire_after_s)
        view = RedisView(redis, settings.redis_prefix, report.new_namespace)
        caught_up = applied = 0
        pending: list[dict[str, Any]] = []
        async for decision in log.read(position, await log.end()):
            pending.append(decision)
            if len(pending) >= batch:
                applied += (await view.apply(pending)).count("applied")
                caught_up += len(pending)
                pending = []
        if pending:
            applied += (await view.apply(pending)).count("applied")
            caught_up += len(pending)
        return Outcome(report, log.topic, caught_up, applied, time.monotonic() - started)
    finally:
        await log.stop()
        await redis.aclose()


def render(o: Outcome, prefix: str) -> str:
    r = o.report
    old = r.old_namespace or "(none)"
    return "\n".join([
        f"Rebuilt the read model {prefix!r} from {o.topic} in {o.seconds:.1f} s",
        f"  decisions read  {r.decisions:,} (applied {r.applied:,}, "
        f"already-seen duplicates skipped {r.skipped:,})",
        f"  accounts        {r.accounts:,}",
        f"  digest          {r.digest} (equals an in-memory projection of the same decisions)",
        f"  namespace       {old} -> {r.new_namespace} (readers switched atomically; "
        f"{r.removed_keys:,} keys of {old} removed)",
        f"  caught up       {o.caught_up:,} decisions appended during the rebuild "
        f"({o.caught_up_applied:,} not yet in {r.new_namespace})",
    ])


def run(args: argparse.Namespace) -> int:
    if args.batch < 1:
        print("warden projections rebuild: --batch must be >= 1", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"warden projections rebuild: {exc}", file=sys.stderr)
        return 2
    try:
        outcome = asyncio.run(rebuild_from_log(settings, batch=args.batch,
                                               retire_after_s=args.retire_after))
    except MissingTopic:
        print(f"warden projections rebuild: topic {settings.topics.decisions!r} does not exist "
              f"on {settings.kafka_bootstrap}", file=sys.stderr)
        return 1
    except RebuildVerificationError as exc:
        print(f"warden projections rebuild: verification failed: {exc}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError, KafkaError, RedisError) as exc:
        print(f"warden projections rebuild: {safe(repr(exc), 500)}", file=sys.stderr)
        return 1
    print(render(outcome, settings.redis_prefix))
    return 0
