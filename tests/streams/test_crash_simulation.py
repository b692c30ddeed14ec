"""kill -9 at random points, simulated without Kafka: topics are logs, tables are changelogs.

What a crash keeps, as on the real services: every output a batch produced (the agent
waits for the broker's acks before writing state), for each changelog topic-partition its
own prefix of the writes made since the last offset commit (Faust flushes the producer
before committing offsets; the partitions are acked independently), and the committed
offsets, which never pass an input the account stage still holds for alignment
(`commit_floor`). In-memory state (lift heaps, clocks' caches, alignment buffers) is lost.
Fetches interleave the input topics and the inboxes unevenly, as separate fetch responses do.

The decisions, deduplicated by `decision_id`, must be exactly replay's, and no
`decision_id` may name two different decisions.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from detectors.config import policy_from_mapping
from detectors.engine import Engine
from detectors.events import Rejected, decode_object
from streams import simulate
from streams.metrics import Metrics
from streams.records import Record, partition_of
from streams.stages import AccountStage, DeviceStage
from streams.topics import TopicNames

NAMES = TopicNames("", "warden")
PARTITIONS = 3
POLICY = policy_from_mapping({"lifecycle": {"quiet_base_ms": 21_600_000}})
TABLES = ("accounts", "clocks", "devices", "device-held")


class CrashBus:
    def __init__(self, seed: int, speeds: tuple[int, ...] = (4,) * PARTITIONS) -> None:
        self.rng = random.Random(seed)
        self.speeds = speeds  # most records a fetch takes per topic, per partition
        self.logs: dict[tuple[str, int], list[Record]] = {}
        self.committed: dict[tuple[str, int], int] = {}
        # one log per changelog topic-partition; each keeps its own prefix after a crash
        self.changelogs: dict[tuple[str, int], list[tuple[bytes, bytes | None]]] = {}
        self.durable: dict[tuple[str, int], int] = {}  # flushed by the last offset commit
        self.wall = 0
        self.crashes = 0
        self.start()

    # --- the "broker" -----------------------------------------------------------------
    def append(self, topic: str, key: bytes | None, value: bytes, partition: int | None) -> None:
        if partition is None:
            partition = partition_of(key, PARTITIONS) if key else 0
        log = self.logs.setdefault((topic, partition), [])
        log.append(Record(topic, partition, len(log), key, value, 0))

    def highwater(self, topic: str, partition: int) -> int:
        return len(self.logs.get((topic, partition), ()))

    # --- a worker process -----------------------------------------------------------------
    def start(self) -> None:
        self.tables: dict[str, dict[bytes, bytes]] = {name: {} for name in TABLES}
        for (name, partition), log in self.changelogs.items():
            del log[self.durable.get((name, partition), 0):]
            for key, value in log:
                if value is None:
                    self.tables[name].pop(key, None)
                else:
                    self.tables[name][key] = value
        self.position = dict(self.committed)
        self.account = AccountStage(policy=POLICY, names=NAMES, partitions=PARTITIONS,
                                    accounts=self.tables["accounts"],
                                    clocks=self.tables["clocks"],
                                    metrics=Metrics(CollectorRegistry()),
                                    wall_ms=lambda: self.wall, highwater=self.highwater,
                                    align_ms=100)
        self.device = DeviceStage(policy=POLICY, names=NAMES, devices=self.tables["devices"],
                                  partitions=PARTITIONS, held=self.tables["device-held"],
                                  wall_ms=lambda: self.wall)
        # each start joins the group in a new generation (streams/device_stage.py `fresh`)
        self.account.generation = self.device.generation = self.crashes
        for topic in NAMES.inputs:  # as Warden._seed_positions
            for p in range(PARTITIONS):
                if (topic, p) in self.position:
                    self.account.topic_offset[(topic, p)] = self.position[(topic, p)] - 1
                    self.account.alignment.received[(topic, p)] = self.position[(topic, p)] - 1

    def crash(self) -> None:
        self.crashes += 1
        for log_id, log in self.changelogs.items():
            self.durable[log_id] = self.rng.randint(self.durable.get(log_id, 0), len(log))
        self.start()
        if self.rng.randrange(2):  # the restarted device stage may take a batch first: the
            self.run_device()      # marks it re-reads are the dead worker's promises

    def commit_offsets(self) -> None:
        """As `WardenConsumer`: no input partition past the account stage's commit floor."""
        self.durable = {log_id: len(log) for log_id, log in self.changelogs.items()}
        for (topic, partition), position in self.position.items():
            floor = self.account.commit_floor(topic, partition)
            self.committed[(topic, partition)] = position if floor is None else min(position, floor)

    def fetch(self, topics: tuple[str, ...], partition: int) -> list[Record]:
        """Uneven: each topic contributes 0-4 of its next records (0 to the partition's speed)."""
        out = []
        for topic in topics:
            key = (topic, partition)
            start = self.position.get(key, 0)
            most = 4 if topic == NAMES.account_inbox else self.speeds[partition]
            taken = self.logs.get(key, [])[start:start + self.rng.randint(0, most)]
            self.position[key] = start + len(taken)
            out.extend(taken)
        return out

    def run_batch(self) -> None:
        """An account-stage batch of every partition, then the device stage answers what
        they asked (both keep up with the load, as on the real services)."""
        for partition in range(PARTITIONS):
            records = self.fetch((*NAMES.inputs, NAMES.account_inbox), partition)
            if records:
                self.apply(self.account.process(records))
                self.account.batch_written()
        self.run_device()

    def run_device(self) -> None:
        for p in range(PARTITIONS):
            start = self.position.get((NAMES.device_inbox, p), 0)
            records = self.logs.get((NAMES.device_inbox, p), [])[start:]
            self.position[(NAMES.device_inbox, p)] = start + len(records)
            if records:
                self.apply(self.device.process(records))

    def apply(self, batch: Any) -> None:
        for out in batch.outputs:  # produced and acked before any state write
            self.append(out.topic, out.key, out.value, out.partition)
        for (name, key), (partition, value) in batch.writes.items():
            self.changelogs.setdefault((name, partition), []).append((key, value))
            if value is None:
                self.tables[name].pop(key, None)
            else:
                self.tables[name][key] = value

    def pending(self) -> bool:
        topics = (*NAMES.inputs, NAMES.account_inbox, NAMES.device_inbox)
        return any(self.position.get((t, p), 0) < self.highwater(t, p)
                   for t in topics for p in range(PARTITIONS))

    def decisions(self) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for p in range(PARTITIONS)
                for r in self.logs.get((NAMES.decisions, p), [])]


def replay(inputs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    engine = Engine(POLICY)
    out = []
    for topic, value in inputs:
        event = decode_object(topic, value)
        if not isinstance(event, Rejected):
            out.extend(d.to_dict() for d in engine.process(event).decisions)
    return out


def run(inputs, *, seed: int, crash_every: int | None, backlog: bool = False,
        speeds: tuple[int, ...] = (4,) * PARTITIONS) -> CrashBus:
    """`backlog`: every input is on the broker before the worker starts (as after downtime)."""
    bus = CrashBus(seed, speeds)
    rng = random.Random(seed + 1)
    fed = 0
    steps = 0
    while fed < len(inputs) or bus.pending() or any(bus.account.alignment.waiting().values()) \
            or bus.tables["device-held"] or any(bus.account.gates(p) for p in range(PARTITIONS)):
        for topic, value in inputs[fed:len(inputs) if backlog else fed + rng.randint(0, 6)]:
            key = value["reported_id"] if topic == "message-reports" else value["account_id"]
            bus.append(topic, key.encode(), orjson.dumps(value), None)
            fed += 1
        bus.run_batch()
        steps += 1
        bus.wall += 10
        if steps % 5 == 0:  # the alignment timer
            for out in bus.account.alignment_ticks(range(PARTITIONS)):
                bus.append(out.topic, out.key, out.value, out.partition)
        if steps % 10 == 0:  # the idle clock: frontiers again, requests that waited too long
            for out in [*bus.account.merge_ticks(range(PARTITIONS)),
                        *bus.device.due_ticks(range(PARTITIONS))]:
                bus.append(out.topic, out.key, out.value, out.partition)
        if steps % 7 == 0:
            bus.commit_offsets()
        if crash_every and rng.randrange(crash_every) == 0:
            bus.crash()
    return bus


def compare(bus: CrashBus, want: list[dict[str, Any]]) -> list[str]:
    first: dict[str, dict[str, Any]] = {}
    for d in bus.decisions():
        kept = first.setdefault(d["decision_id"], d)
        assert kept == d, f"{d['decision_id']} names two decisions:\n{kept}\n{d}"
    got = {k: (d["type"], d["at"], d["level"]) for k, d in first.items()}
    expected = {d["decision_id"]: (d["type"], d["at"], d["level"]) for d in want}
    return sorted(k.split(":")[0] for k in set(got) ^ set(expected)
                  | {k for k in set(got) & set(expected) if got[k] != expected[k]})


def workload():
    return list(simulate.generate(accounts=150, events=3000, seed=23, days=3))


def test_without_crashes_uneven_fetches_decide_exactly_like_replay():
    inputs = workload()
    bus = run(inputs, seed=1, crash_every=None)
    assert compare(bus, replay(inputs)) == []


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_after_random_kill_9s_the_deduplicated_decisions_are_exactly_replays(seed):
    inputs = workload()
    bus = run(inputs, seed=seed, crash_every=60)
    assert bus.crashes >= 10
    assert compare(bus, replay(inputs)) == []


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("crash_every", [None, 60])
def test_partitions_draining_a_backlog_at_different_speeds_decide_exactly_like_replay(
        seed, crash_every):
    """After downtime one account partition drains its backlog 12 times faster than another,
    so their requests reach a device far apart in event time. The device stage applies them
    in event-time order (streams/device_stage.py): every ban_evasion and tainted_device of
    replay, none it lacks, and evaded accounts are extended before their lifts."""
    inputs = workload()
    bus = run(inputs, seed=seed, crash_every=crash_every, backlog=True, speeds=(12, 4, 1))
    assert compare(bus, replay(inputs)) == []
