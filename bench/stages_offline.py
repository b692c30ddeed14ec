"""Warden's own Python per event, without Kafka: both stages over in-memory logs and tables.

    python bench/stages_offline.py [--events 100000] [--accounts N] [--seed 5]
                                   [--partitions 4] [--batch 300] [--profile F]

The same seeded `warden simulate` workload as bench/perf.py (Pareto-skewed, all input
topics) is put on in-memory "topics" as a backlog; the account and device stages of
streams/stages.py then run as the worker runs them (batches of up to `--batch` records
per topic and partition, the inboxes first), their outputs appended to the logs and
their writes applied to the tables, until every log is read and nothing waits. What it
times is what stage D's worker spends in Warden's own code: parsing, the per-account
causal order, the pure core, record and message encoding. Not Faust, not the broker,
not Redis.

Prints CPU microseconds per input event, and the same for a baseline measured in the
same run: `orjson.loads` of every input (what any consumer must at least do), so runs on
a noisy machine compare by ratio. `--profile F` writes a cProfile of the stages to F
(`python -m pstats F`).
"""

from __future__ import annotations

import argparse
import cProfile
import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from detectors.config import load_policy
from streams import simulate
from streams.metrics import Metrics
from streams.records import Record, compact, partition_of
from streams.stages import AccountStage, Batch, DeviceStage
from streams.topics import TopicNames
from streams.worker import tune_gc

NAMES = TopicNames("", "warden")


class Bus:
    """Topics as lists, tables as dicts; a clock that moves 10 ms a round."""

    def __init__(self, partitions: int, batch: int) -> None:
        self.partitions, self.batch = partitions, batch
        self.logs: dict[tuple[str, int], list[Record]] = {}
        self.position: dict[tuple[str, int], int] = {}
        self.tables: dict[str, dict[bytes, bytes]] = {
            name: {} for name in ("accounts", "clocks", "devices", "device-held")}
        self.wall = int(time.time() * 1000)
        self.rounds = 0
        policy = load_policy(None)
        self.account = AccountStage(policy=policy, names=NAMES, partitions=partitions,
                                    accounts=self.tables["accounts"],
                                    clocks=self.tables["clocks"],
                                    metrics=Metrics(CollectorRegistry()),
                                    wall_ms=lambda: self.wall, highwater=self.highwater,
                                    align_ms=100)
        self.device = DeviceStage(policy=policy, names=NAMES, devices=self.tables["devices"],
                                  partitions=partitions, held=self.tables["device-held"],
                                  wall_ms=lambda: self.wall)

    def append(self, topic: str, key: bytes | None, value: bytes, partition: int | None,
               ts: int | None = None) -> None:
        if partition is None:
            partition = partition_of(key, self.partitions) if key else 0
        log = self.logs.setdefault((topic, partition), [])
        # (a copy, as the producer copies a value into its batch: orjson's output holds a
        # 4 KiB block, and keeping those blocks would time page faults the worker does not have)
        log.append(Record(topic, partition, len(log), key, compact(value), ts))

    def highwater(self, topic: str, partition: int) -> int:
        return len(self.logs.get((topic, partition), ()))

    def take(self, topics: tuple[str, ...], partition: int) -> list[Record]:
        out: list[Record] = []
        for topic in topics:
            key = (topic, partition)
            start = self.position.get(key, 0)
            taken = self.logs.get(key, [])[start:start + self.batch]
            self.position[key] = start + len(taken)
            out.extend(taken)
        return out

    def apply(self, batch: Batch) -> None:
        for out in batch.outputs:
            self.append(out.topic, out.key, out.value, out.partition, self.wall)
        for (name, key), (_, value) in batch.writes.items():
            if value is None:
                self.tables[name].pop(key, None)
            else:
                self.tables[name][key] = compact(value)  # (as the worker's commit keeps it)

    def round(self) -> None:
        for partition in range(self.partitions):
            records = self.take((NAMES.account_inbox, *NAMES.inputs), partition)
            if records or self.account.alignment.due_partitions():
                self.apply(self.account.process(records))
                self.account.batch_written()
        for partition in range(self.partitions):
            records = self.take((NAMES.device_inbox,), partition)
            if records:
                self.apply(self.device.process(records))
        self.wall += 10
        self.rounds += 1
        if self.rounds % 10 == 0:  # the timers (alignment, idle clock)
            for out in [*self.account.alignment_ticks(range(self.partitions)),
                        *self.account.merge_ticks(range(self.partitions)),
                        *self.device.due_ticks(range(self.partitions))]:
                self.append(out.topic, out.key, out.value, out.partition, self.wall)

    def busy(self) -> bool:
        """Records not read yet, other than the timers' ticks, or inputs still waiting."""
        read = (*NAMES.inputs, NAMES.account_inbox, NAMES.device_inbox)
        unread = any(not r.value.startswith(b'["tick"')
                     for (topic, p), log in self.logs.items() if topic in read
                     for r in log[self.position.get((topic, p), 0):])
        return unread or any(self.account.alignment.waiting().values()) \
            or any(self.device.waiting().values())

    def decisions(self) -> int:
        return sum(len(self.logs.get((NAMES.decisions, p), []))
                   for p in range(self.partitions))


def load(bus: Bus, inputs: list[tuple[str, bytes]]) -> None:
    """Every input on its topic, keyed as the spec says: a backlog, as after downtime."""
    for topic, raw in inputs:
        value: dict[str, Any] = orjson.loads(raw)
        key = value["reported_id"] if topic == NAMES.input("message-reports") \
            else value["account_id"]
        bus.append(topic, key.encode(), raw, None, bus.wall)


def drain(bus: Bus, *, most_rounds: int = 100_000) -> None:
    while bus.busy() and bus.rounds < most_rounds:
        bus.round()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=0, help="default: events / 10")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--batch", type=int, default=300,
                        help="records per topic and partition a batch takes at most")
    parser.add_argument("--profile", help="write a cProfile of the stages to this file")
    args = parser.parse_args()
    start_ms = int(time.time() * 1000) - 7 * 86_400_000
    plan = simulate.plan(accounts=args.accounts or max(1000, args.events // 10),
                         events=args.events, seed=args.seed, start_ms=start_ms)
    inputs = [(NAMES.input(topic), orjson.dumps(value)) for topic, value in plan.events()]

    started = time.process_time()
    for _, raw in inputs:
        orjson.loads(raw)
    baseline_s = time.process_time() - started

    bus = Bus(args.partitions, args.batch)
    load(bus, inputs)
    tune_gc()  # as the worker starts (the backlog, on the broker there, is frozen out)
    profile = cProfile.Profile() if args.profile else None
    started = time.process_time()
    if profile:
        profile.enable()
    drain(bus)
    if profile:
        profile.disable()
        profile.dump_stats(args.profile)
    stages_s = time.process_time() - started

    n = len(inputs)
    print(f"{n:,} input events, {bus.decisions():,} decisions, {bus.rounds:,} rounds, "
          f"{len(bus.tables['accounts']):,} account records")
    print(f"baseline  orjson.loads of every input   {1e6 * baseline_s / n:8.2f} us per event")
    print(f"stages    account + device stage        {1e6 * stages_s / n:8.2f} us per event"
          f"   ({stages_s / max(baseline_s, 1e-9):.0f} x baseline)")


if __name__ == "__main__":
    main()
