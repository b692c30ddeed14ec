"""Stages A, B and C of bench/perf.py, each run as its own process over the same topics.

    python bench/perf_consumers.py {raw,faust-noop,faust-noop-warden,faust-table} --bootstrap B
        --topics T1,T2,..
        --total N --group G --partitions P --progress FILE [--datadir DIR]

Each reads every topic from the beginning with its own consumer group and rewrites FILE
(JSON) about twice a second: {"count", "timed", "seconds", "done"}: `seconds` runs from the end
of the first delivery handed to user code (a getmany batch for A, one event for B and C) to the
last event handled, and `timed` counts the events after that first delivery. Excluding the
first delivery matters for A only: its first batch can hold tens of MB prefetched in the
background before the clock could start. The parent (bench/perf.py) waits for
`done` or its time cap, then terminates this process.

- raw:         aiokafka `getmany` + `orjson.loads` of every value, nothing else (the limit).
- faust-noop:  a stock faust-streaming app, one agent, `async for value in stream: pass`.
- faust-table: what a typical user writes from the Faust tutorial: values decoded by Faust's
               json serializer, and for each friend add one Table update (the account's
               10-minute window of (ts, friend) pairs); 30 distinct friends sends one alert.
               Other topics' events are decoded and skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

WINDOW_MS = 10 * 60_000
THRESHOLD = 30


class Progress:
    """Counts events and rewrites the progress file at most twice a second."""

    def __init__(self, path: Path, total: int) -> None:
        self.path, self.total = path, total
        self.count = self.base = 0
        self.first = self.last = 0.0
        self.written = 0.0

    def tick(self, n: int = 1) -> None:
        now = time.perf_counter()
        if not self.count:
            self.first, self.base = now, n  # the first delivery starts the clock, uncounted
        self.count += n
        self.last = now
        if self.count >= self.total or now - self.written > 0.5:
            self.write(done=self.count >= self.total)

    def write(self, *, done: bool) -> None:
        self.written = time.perf_counter()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({"count": self.count, "timed": self.count - self.base,
                                      "seconds": self.last - self.first, "done": done,
                                      "pid": os.getpid()}))
        tmp.replace(self.path)


async def raw(args: argparse.Namespace, progress: Progress) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(*args.topics, bootstrap_servers=args.bootstrap,
                                group_id=args.group, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    loads = orjson.loads
    try:
        while progress.count < progress.total:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    loads(record.value)
                progress.tick(len(records))
        await asyncio.Event().wait()  # the parent terminates us
    finally:
        await consumer.stop()


def faust_app(args: argparse.Namespace, **options: Any) -> Any:
    import faust

    return faust.App(args.group, broker=f"kafka://{args.bootstrap}", store="memory://",
                     topic_partitions=args.partitions, topic_replication_factor=1,
                     consumer_auto_offset_reset="earliest", autodiscover=False,
                     datadir=args.datadir, web_enabled=False, **options)


def faust_noop(args: argparse.Namespace, progress: Progress, *, warden: bool = False) -> Any:
    app = faust_app(args, key_serializer="raw", value_serializer="raw")
    if warden:  # as streams/app.py does, before anything builds the default transport
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from streams.consumer import WardenTransport

        app.transport = WardenTransport(app.conf.broker_consumer, app)
    topic = app.topic(*args.topics, key_type=bytes, value_type=bytes)

    @app.agent(topic)
    async def noop(stream: Any) -> None:
        async for _value in stream:
            progress.tick()

    return app


def faust_table(args: argparse.Namespace, progress: Progress) -> Any:
    app = faust_app(args)  # Faust's defaults: raw keys, json values
    topic = app.topic(*args.topics, key_type=str)
    alerts = app.topic(f"{args.group}-alerts", partitions=args.partitions)
    windows = app.Table("friend-windows", default=list, partitions=args.partitions)
    friend_adds = next(t for t in args.topics if t.endswith("friend-adds"))

    @app.task
    async def declare_alerts() -> None:
        await alerts.maybe_declare()

    @app.agent(topic)
    async def friend_add_burst(stream: Any) -> None:
        async for event in stream.events():
            value = event.value
            if event.message.topic == friend_adds:
                account, ts = value["account_id"], value["ts"]
                window = [p for p in windows[account] if p[0] > ts - WINDOW_MS]
                window.append((ts, value["friend_id"]))
                windows[account] = window  # the one Table update per event
                if len({friend for _, friend in window}) == THRESHOLD:
                    await alerts.send(key=account, value={"account_id": account, "at": ts})
            progress.tick()

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("raw", "faust-noop", "faust-noop-warden", "faust-table"))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topics", required=True, type=lambda s: s.split(","))
    parser.add_argument("--total", required=True, type=int)
    parser.add_argument("--group", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--progress", required=True, type=Path)
    parser.add_argument("--datadir", default=".run/perf-faust")
    args = parser.parse_args(argv)
    progress = Progress(args.progress, args.total)
    if args.kind == "raw":
        asyncio.run(raw(args, progress))
        return 0
    from faust import Worker

    if args.kind == "faust-table":
        app = faust_table(args, progress)
    else:
        app = faust_noop(args, progress, warden=args.kind == "faust-noop-warden")
    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
