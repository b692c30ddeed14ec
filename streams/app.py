"""The one composition root: a Faust app with Warden's topics, tables and agents.

Data flows one way (STYLE "Where code lives"): input topics and the account
inbox → account stage → `account-decisions` (+ inbox messages for other keys);
the device inbox → device stage → account inbox; `account-decisions` → Redis.
Agents are thin: they turn Faust events into `Record`s, hand batches to the
runners in streams/stages.py, produce, wait for delivery, then write state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import faust
from faust.sensors.prometheus import setup_prometheus_sensors
from faust.types import TP
from prometheus_client import CollectorRegistry

from detectors.config import Policy, load_policy
from streams import envelope
from streams.consumer import WardenConsumer, WardenTransport
from streams.direct import RecordSink
from streams.memory import HeapTrim
from streams.metrics import Metrics
from streams.projector import Projector
from streams.records import compact
from streams.sending import send_batched
from streams.sensors import WardenMonitor
from streams.settings import Settings
from streams.stages import AccountStage, Batch, DeviceStage, Output, Record

log = logging.getLogger("warden")

BATCH_MAX = 1000
# the largest record the worker writes, and its tables' changelog topics take (Kafka's default
# is 1 MB): an account's record holds the inputs parked behind its replies, and a hot account
# in a backlog parks thousands before the pause for them (`_pace_inputs`) takes hold
RECORD_MAX_BYTES = 16 * 1024 * 1024
BATCH_WITHIN_S = 0.05
# a batch also closes once nothing arrived for this long and nothing more is fetched
# (streams/direct.py): at 200 events/s p50 298 -> 197 ms with 5 ms, throughput unchanged;
# at 2,000/s 5 ms rarely passes without a record, so batches ran to `within`: 1 ms
BATCH_QUIET_S = 0.001


class Warden:
    """Everything a worker runs, built from `Settings` (no I/O until started)."""

    def __init__(self, settings: Settings, *, policy: Policy | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.policy = policy or load_policy(settings.policy_path)
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        s = settings
        self.app = faust.App(
            s.app_id,
            broker=s.broker_url,
            broker_credentials=s.faust_credentials(),
            store="memory://",
            topic_partitions=s.partitions,
            topic_replication_factor=1,
            key_serializer="raw",
            value_serializer="raw",
            autodiscover=False,
            datadir=s.data_dir,
            web_enabled=True,
            web_host=s.web_host,
            web_port=s.web_port,
            web_bind=s.web_host,
            web_tables_enabled=False,   # would expose raw state
            web_router_enabled=False,
            web_graph_enabled=False,
            web_stats_enabled=False,
            producer_acks=-1,
            producer_max_request_size=RECORD_MAX_BYTES,
            # a batch's outputs and state are sent together (streams/sending.py) and awaited at
            # once: a linger only delayed each batch (5 ms: commit p50 19 -> 10 ms at 2,000/s)
            producer_linger=0.0,
            consumer_auto_offset_reset="earliest",
            stream_publish_on_commit=False,
            broker_commit_every=1000,
            broker_max_poll_records=1000,  # a batch handed out before the inboxes are looked at
            broker_commit_interval=1.0,
            table_standby_replicas=0,
            logging_config=None,
        )
        # before anything builds the default one: Faust's consumer with exact commit offsets
        self.app.transport = WardenTransport(self.app.conf.broker_consumer, self.app)
        # the inboxes' records are handed out before the input backlog's (PriorityConsumerThread)
        setup_prometheus_sensors(self.app, registry=self.registry, name_prefix="faust")
        self.app.monitor = WardenMonitor.replacing(self.app.monitor)  # (streams/sensors.py)
        # each stage takes its topics' records in lists, past Faust's streams (streams/direct.py)
        # (as many records wait for a stage as did in its stream's buffer)
        inbound, most = self.app.monitor.stream_inbound_time, self.app.conf.stream_buffer_maxsize
        sink = functools.partial(RecordSink, maxsize=most, inbound=inbound,
                                 on_drop=lambda records: self.app.consumer.untrack(records))
        self.account_sink = sink(s.topics.account_sources)
        self.device_sink = sink([s.topics.device_inbox])
        self.decision_sink = sink([s.topics.decisions])
        sinks = {topic: sink for sink in (self.account_sink, self.device_sink, self.decision_sink)
                 for topic in sink.topics}
        for sink in (self.account_sink, self.device_sink, self.decision_sink):
            self.app.flow_control.manage_queue(sink)  # type: ignore[arg-type]  # (its `clear`)
        self.app.transport.Consumer = type("Consumer", (WardenConsumer,), {
            "priority_topics": frozenset([s.topics.account_inbox, s.topics.device_inbox]),
            "on_skipped": staticmethod(self._offsets_skipped),
            "commit_floor": staticmethod(self._commit_floor),
            "sinks": sinks})
        self._declare_topics()
        self._declare_tables()
        self.account_stage = AccountStage(
            policy=self.policy, names=s.topics, partitions=s.partitions,
            accounts=self.accounts.data, clocks=self.clocks.data, metrics=self.metrics,
            highwater=self._partition_reader("highwater"),
            fetched_at=self._partition_reader("fetched_at"),
            requested_at=self._partition_reader("fetch_requested_at"), align_ms=s.align_ms,
            align_skew_ms=s.align_skew_ms, gate_wait_ms=s.hop_wait_ms)
        self.device_stage = DeviceStage(policy=self.policy, names=s.topics,
                                        devices=self.devices.data, partitions=s.partitions,
                                        held=self.device_held.data, hop_wait_ms=s.hop_wait_ms)
        self.projector = Projector(settings, self.metrics)
        # set by the idle clock: inputs wait on the broker but no batch came for stall_s; /health
        # then answers 503 so a supervisor restarts the worker (liveness, whatever the cause)
        self.stalled = False
        # account partitions whose inputs wait for replies (shared: it bounds their frontier)
        self.paused: set[int] = self.account_stage.paused
        self._held_back: set[TP] = set()  # input topic-partitions `_pace_inputs` paused
        self._changelog_sent: list[Any] = []  # changelog writes not awaited yet (`commit`)
        # held by whatever reads a stage's tables and writes them back after awaits: its
        # batches and its sweeps (`sweep`)
        self.account_state = asyncio.Lock()
        self.device_state = asyncio.Lock()
        self._commits = 0  # batches committed: work done, for `heap_trim`
        self.heap_trim = HeapTrim()
        names = s.topics
        self._sources = {names.account_inbox: "account-inbox",
                         names.device_inbox: "device-inbox", names.decisions: "decisions"}
        self._tables = {"accounts": self.accounts, "clocks": self.clocks, "devices": self.devices,
                        "device-held": self.device_held}
        self._changelogs = {name: table.changelog_topic.get_topic_name()
                            for name, table in self._tables.items()}
        self._declare_agents()
        self._declare_lifecycle()
        from streams import web  # routes need the built app

        web.register(self)

    # --- topology -------------------------------------------------------------------
    def _declare_topics(self) -> None:
        app, n, names = self.app, self.settings.partitions, self.settings.topics
        self.account_source = app.topic(*names.account_sources, partitions=n, key_type=bytes,
                                        value_type=bytes)
        self.device_source = app.topic(names.device_inbox, partitions=n, key_type=bytes,
                                       value_type=bytes)
        self.decision_source = app.topic(names.decisions, partitions=n, key_type=bytes,
                                         value_type=bytes)

    def _declare_tables(self) -> None:
        def table(name: str) -> Any:
            return self.app.Table(name, default=None, partitions=self.settings.partitions,
                                  key_type=bytes, value_type=bytes,
                                  extra_topic_configs={"max.message.bytes": str(RECORD_MAX_BYTES)})

        self.accounts = table("accounts")  # AccountRecord: state + applied ids + parked inputs
        self.clocks = table("clocks")
        self.devices = table("devices")
        self.device_held = table("device-held")  # requests waiting for the event-time merge

    def _declare_agents(self) -> None:
        app = self.app
        names = self.settings.topics

        @app.agent(self.account_source, name="account-stage")
        async def account_stage(stream: Any) -> None:
            async for messages in self._batches(stream, self.account_sink, BATCH_MAX,
                                                due=self.account_stage.next_batch_s):
                records = _records(messages)
                if records:  # (none: held inputs' wait ended, `next_batch_s`)
                    self.metrics.batch_size.observe(len(records))
                    self._record_waits("account", messages)
                await self.handle_account_batch(records)
                await self._pace_inputs()

        @app.agent(self.device_source, name="device-stage")
        async def device_stage(stream: Any) -> None:
            async for messages in self._batches(stream, self.device_sink, BATCH_MAX):
                self._record_waits("device", messages)
                await self.handle_device_batch(_records(messages))
                self._gauge_held()

        @app.agent(self.decision_source, name="projector")
        async def projector(stream: Any) -> None:
            async for messages in self._batches(stream, self.decision_sink,
                                                self.settings.projection_batch):
                self._record_waits("projector", messages)
                await self.projector.apply([(m.value, m.timestamp) for m in messages])

        self.agents = (account_stage, device_stage, projector)

    def _record_waits(self, stage: str, messages: Sequence[Any]) -> None:
        """`warden_record_wait_seconds`: per source, the age of the batch's oldest record (one
        observation per batch and source, not per record: this runs for every batch)."""
        oldest: dict[str, float] = {}
        source = self._sources
        for m in messages:
            ts = m.timestamp
            if ts:
                kind = source.get(m.topic, "inputs")
                if ts < oldest.get(kind, ts + 1):
                    oldest[kind] = ts
        if oldest:
            now = time.time()
            for kind, ts in oldest.items():
                self.metrics.record_wait.labels(stage, kind).observe(max(0.0, now - ts))

    async def _batches(self, stream: Any, sink: RecordSink, max_: int,
                       due: Callable[[], float | None] = lambda: None,
                       ) -> AsyncIterator[list[Any]]:
        """Lists of at most `max_` of the agent's records, taken from its sink, that close
        early once the consumer has handed over everything it knows of on the sink's
        topics, and empty ones when `due()` runs out (streams/direct.py)."""
        aiter(stream.channel)  # subscribes the agent's topics (their records come to `sink`)
        consumer: Any = self.app.consumer
        topics = sink.topics
        async for batch in sink.batches(max_, within=BATCH_WITHIN_S, quiet=BATCH_QUIET_S,
                                        ack=consumer.ack_taken,
                                        unread=lambda: consumer.has_unread(topics), due=due):
            yield batch

    def _declare_lifecycle(self) -> None:
        app = self.app

        @app.timer(interval=self.settings.tick_interval_s, on_leader=False)
        async def idle_clock() -> None:
            """Idle partitions advance their clock from the wall clock (SPEC "Time")."""
            if not self.recovered:
                return
            assigned = self._assigned_account_partitions()
            # the event-time merge's work no batch started: frontiers that moved, requests
            # and lifts that waited WARDEN_HOP_WAIT_MS (ticks: the stages' own batches do it)
            await self.produce(self.account_stage.merge_ticks(assigned))
            await self.produce(self.device_stage.due_ticks(self._assigned_device_partitions()))
            self.account_stage.report_lag(assigned)
            self.heap_trim(asyncio.get_running_loop().time(), self._commits)
            stalled = self.account_stage.stalled(assigned, after_ms=self.settings.stall_s * 1000)
            if stalled and not self.stalled:
                log.error("stalled: records waiting on %s, none handled for %d s",
                          ", ".join(f"{t}[{p}]" for t, p in stalled), self.settings.stall_s)
            self.stalled = bool(stalled)
            if not self.settings.idle_advance:
                return
            ticks = self.account_stage.idle_ticks(self._assigned_account_partitions(),
                                                  grace_ms=self.settings.idle_grace_ms)
            await self.produce(ticks)

        @app.timer(interval=max(0.02, self.settings.align_ms / 2000), on_leader=False)
        async def alignment_clock() -> None:
            """Inputs held for a quiet input topic leave after WARDEN_ALIGN_MS even when no
            further record reaches their partition (streams/alignment.py)."""
            if not self.recovered or self.settings.align_ms <= 0:
                return
            await self.produce(self.account_stage.alignment_ticks(
                self._assigned_account_partitions()))

        @app.timer(interval=self.settings.sweep_interval_s, on_leader=False)
        async def sweep_state() -> None:
            """Bounded memory: expire windows, idle accounts, old dedupe ids and device entries."""
            await self.sweep()

        @app.timer(interval=5.0, on_leader=True)
        async def active_gauge() -> None:
            await self.projector.refresh_active_gauge()

        @app.task
        async def on_start() -> None:
            await self.projector.start()

        @app.on_partitions_revoked.connect  # type: ignore[misc]
        async def on_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
            # a sweep under way finishes its writes before the partitions change hands
            # (Faust waited for the batches: `Consumer.wait_empty`), and they are flushed
            async with self.account_state, self.device_state:
                pass
            await self.app.producer.flush()
            self.account_stage.forget_partitions(range(self.settings.partitions))
            self.device_stage.forget_partitions(range(self.settings.partitions))
            self.paused.clear()  # Faust resumes every stream partition after a rebalance
            self._held_back = set()
            for partition in range(self.settings.partitions):
                self.metrics.paused.labels(str(partition)).set(0)

        @app.on_partitions_assigned.connect  # type: ignore[misc]
        async def on_assigned(sender: Any, *args: Any, **kwargs: Any) -> None:
            # frontiers the previous owners announced do not bind the new ones (`fresh`)
            generation = getattr(self.app, "consumer_generation_id", 0)
            self.account_stage.generation = self.device_stage.generation = generation
            self.account_stage.forget_partitions(range(self.settings.partitions))
            # read again from the committed offsets: inputs held before are read again too
            self.account_stage.reset_commit_floors()
            self.device_stage.forget_partitions(range(self.settings.partitions))
            await self._seed_positions(args[0] if args else kwargs.get("assigned", ()))

    async def handle_account_batch(self, records: list[Record]) -> None:
        """Apply a batch of the account stage and write its outputs and state."""
        async with self.account_state:
            await self.commit(self.account_stage.process(records))
            self.account_stage.batch_written()  # (inputs it applied may be committed)

    async def handle_device_batch(self, records: list[Record]) -> None:
        async with self.device_state:
            await self.commit(self.device_stage.process(records))

    async def sweep(self) -> None:
        """Expire both stages' state (a timer's work). Each sweep holds its stage's state
        lock, as its batches do: a sweep reads records and writes their pruned copies
        after awaits (`commit`), and a batch written in between would be overwritten
        by a copy from before it, its inputs' effects lost."""
        async with self.account_state:
            if self.recovered:  # (checked again once the batch under way is written)
                await self.commit(self.account_stage.sweep(
                    assigned=self._assigned_account_partitions()))
        async with self.device_state:
            if self.recovered:
                await self.commit(self.device_stage.sweep(
                    partitions=self.settings.partitions,
                    assigned=self._assigned_device_partitions()))

    async def _pace_inputs(self) -> None:
        """Back-pressure on the input topics, after each batch of the account stage.

        Cross-key hops: a partition with WARDEN_MAX_IN_FLIGHT requests unanswered stops
        reading its input topics until half of them are answered. Without it a backlog is
        read far ahead of the replies, every account waits on many of them with later
        inputs parked in its record, and the records (re-written to the changelog after
        every batch) grow until the stage is mostly writing them. So does a partition with
        an account that has `ACCOUNT_PENDING_PAUSE` inputs waiting (in flight or parked),
        until it has half as many: one hot account's backlog, parked behind its replies,
        made a record of several MB (tests/integration/test_hot_account.py).

        Alignment: a partition whose alignment buffer is crowded stops reading the input
        topics ahead of its earliest held input (`InputAlignment.topics_ahead`).

        Not during a rebalance: Faust resumes every stream partition at its end, and the
        pauses begin again from none (`on_revoked`)."""
        if not self.recovered:
            return
        high = self.settings.max_in_flight
        stage, metrics = self.account_stage, self.metrics
        consumer: Any = self.app.consumer
        inputs = self.settings.topics.inputs
        want: set[TP] = set()
        for partition in self._assigned_account_partitions():
            count = stage.in_flight.get(partition, 0)
            metrics.in_flight.labels(str(partition)).set(count)
            crowded = stage.crowded_accounts.get(partition)
            if partition not in self.paused and (count >= high or crowded):
                self.paused.add(partition)
                stage.alignment.stop(partition)
                metrics.paused.labels(str(partition)).set(1)
                metrics.pauses.inc()
            elif partition in self.paused and count <= high // 2 and not crowded:
                self.paused.discard(partition)
                stage.alignment.resume(partition)
                metrics.paused.labels(str(partition)).set(0)
            if partition in self.paused:
                want.update(TP(topic, partition) for topic in inputs)
            else:
                want.update(TP(topic, partition)
                            for topic in stage.alignment.topics_ahead(partition))
        held, freed = want - self._held_back, self._held_back - want
        self._held_back = want
        if held:
            metrics.align_pauses.inc(sum(tp.partition not in self.paused for tp in held))
            await consumer.hold_back(held)
        if freed:
            consumer.resume_partitions(freed)

    @property
    def recovered(self) -> bool:
        """Tables recovered from their changelogs and no rebalance under way."""
        app = self.app
        return (not app.rebalancing and not app.in_recovery
                and app.tables.recovery.completed.is_set())

    async def _seed_positions(self, assigned: Any) -> None:
        """Where each input partition resumes: nothing before it is waiting to be handled.

        Without this, after a restart an input topic that receives nothing new
        would look forever behind and hold every lift back (`lift_clock`).
        """
        inputs = set(self.settings.topics.inputs)
        for tp in assigned or ():
            if tp.topic not in inputs:
                continue
            try:
                position = await self.app.consumer.position(tp)
            except Exception:  # a missing position only delays lifts
                continue
            if position is not None:
                key = (tp.topic, tp.partition)
                stage = self.account_stage
                stage.topic_offset[key] = max(position - 1, stage.topic_offset.get(key, -1))
                received = stage.alignment.received
                received[key] = max(position - 1, received.get(key, -1))

    def _commit_floor(self, tp: TP) -> int | None:
        """Inputs held for alignment live in memory: their offsets are not committed until
        they are applied and written (streams/alignment.py)."""
        return self.account_stage.commit_floor(tp.topic, tp.partition)  # (None: not an input)

    def _offsets_skipped(self, tp: TP, first: int, last: int) -> None:
        self.metrics.skipped_offsets.inc(last - first + 1)
        log.warning("consumer passed offsets %d..%d of %s[%d] without handling them",
                    first, last, tp.topic, tp.partition)

    def _partition_reader(self, method: str) -> Callable[[str, int], int | None]:
        """The consumer's `method` for an input partition, or None when it does not know yet
        (not assigned, not fetched): `highwater`, the end offset it last heard of;
        `fetched_at`, the wall time (ms) of the last fetch answered; `fetch_requested_at`,
        when the fetch request behind that highwater was sent."""
        def read(topic: str, partition: int) -> int | None:
            try:
                value: int | None = getattr(self.app.consumer, method)(TP(topic, partition))
                return value
            except (KeyError, AssertionError, AttributeError):
                return None
        return read

    def _assigned_device_partitions(self) -> list[int]:
        inbox = self.settings.topics.device_inbox
        return sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == inbox)

    def _gauge_held(self) -> None:
        stage, metrics = self.device_stage, self.metrics
        for partition, held in stage.waiting().items():
            metrics.hop_held.labels(str(partition)).set(held)
        if stage.timed_out:
            metrics.hop_timeouts.inc(stage.timed_out)
            log.warning("%d device requests waited WARDEN_HOP_WAIT_MS for account partitions' "
                        "frontiers; heard: %s; here: %s", stage.timed_out,
                        {q: dict(m) for q, m in stage.heard.items()},
                        {p: self.account_stage.frontier(p)
                         for p in self._assigned_account_partitions()})
            stage.timed_out = 0

    def _assigned_account_partitions(self) -> list[int]:
        inbox = self.settings.topics.account_inbox
        return sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == inbox)

    # --- effects ------------------------------------------------------------------------
    async def produce(self, outputs: Sequence[Output]) -> None:
        """Send and wait until the broker has every message (acks=all)."""
        if not outputs:
            return
        names = self.settings.topics
        # one record per inbox partition, not one per message (streams/envelope.py)
        outputs = envelope.pack(outputs, topics=(names.account_inbox, names.device_inbox),
                                partitions=self.settings.partitions)
        await asyncio.gather(*await send_batched(
            self._aiokafka_producer(), ((o.topic, o.partition, o.key, o.value) for o in outputs)))

    async def commit(self, batch: Batch) -> None:
        """Outputs first, then state: a crash in between repeats identical outputs.

        State goes to the tables' changelogs straight through the producer, not through
        `Table.send_changelog`: that queues each write for one background task, and once
        100 wait Faust's conductor stalls the streams until they drain (issue #5). These
        sends are awaited by the next commit (a failed one fails the worker there) and
        flushed before Faust commits offsets, as Faust's own are."""
        self._commits += 1
        await self.produce(batch.outputs)
        if self._changelog_sent:
            sent, self._changelog_sent = self._changelog_sent, []
            await asyncio.gather(*sent)
        changelog = []
        for (name, key), (partition, value) in batch.writes.items():
            table = self._tables[name]
            if value is None:
                if key not in table.data:
                    continue
                del table.data[key]
            else:
                value = table.data[key] = compact(value)
            changelog.append((self._changelogs[name], partition, key, value))
        self._changelog_sent = await send_batched(self._aiokafka_producer(), changelog)

    def _aiokafka_producer(self) -> Any:
        """The aiokafka producer under Faust's, whose batches `send_batched` fills: the same
        one Faust flushes before it commits offsets, so changelog writes sent here are
        on the broker before the offsets of the inputs that caused them."""
        return self.app.producer._ensure_producer()  # type: ignore[attr-defined]


def _records(messages: Sequence[Any]) -> list[Record]:
    """The stage's records: one per message, enveloped inbox messages split out."""
    out = []
    for m in messages:
        ts = int(m.timestamp * 1000) if m.timestamp else None
        out.append(Record(m.topic, m.partition, m.offset, m.key, m.value, ts))
    return envelope.unpack(out)
