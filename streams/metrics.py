"""Every Warden metric, declared once against an injected registry (SPEC "Metrics").

Tests build `Metrics(CollectorRegistry())`; the worker uses one registry for
these and Faust's own Prometheus sensors, served together on `/metrics`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from detectors.decisions import Decision

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter("warden_events_total", "Input events consumed", ["topic"],
                              registry=registry)
        self._events_by_topic: dict[str, Any] = {}
        self.invalid = Counter("warden_invalid_events_total",
                               "Inputs sent to dead-letters, by topic and error code",
                               ["topic", "error"], registry=registry)
        self.duplicates = Counter("warden_duplicate_events_total",
                                  "Inputs ignored as repeated event_id/command_id", ["topic"],
                                  registry=registry)
        self.decisions = Counter("warden_decisions_total",
                                 "Decisions appended, by type and trigger ('none' if no trigger)",
                                 ["type", "trigger"], registry=registry)
        self.active = Gauge("warden_active_restrictions",
                            "Accounts currently restricted (from the read model)", registry=registry)
        self.latency = Histogram("warden_event_to_decision_seconds",
                                 "Produce time of the input to its decision being appended",
                                 buckets=LATENCY_BUCKETS, registry=registry)
        self.record_wait = Histogram(
            "warden_record_wait_seconds",
            "Age of each batch's oldest record of a source when its stage took the batch "
            "(Kafka timestamp to batch start): where records queue between stages",
            ["stage", "source"], buckets=LATENCY_BUCKETS, registry=registry)
        self.projection_lag = Gauge("warden_projection_lag_seconds",
                                    "Age of the newest decision applied to Redis when applied",
                                    registry=registry)
        self.projection_applied = Counter("warden_projection_applied_total",
                                          "Decisions applied to the read model, by result",
                                          ["result"], registry=registry)
        self.projection_errors = Counter("warden_projection_errors_total",
                                         "Failed attempts to write the read model", registry=registry)
        self.redis_up = Gauge("warden_redis_up", "1 when the last Redis call succeeded",
                              registry=registry)
        self.lifts_fired = Counter("warden_lifts_fired_total", "Automatic lifts by clock",
                                   registry=registry)
        self.clock_ms = Gauge("warden_processing_clock_ms", "Event-time clock per partition",
                              ["partition"], registry=registry)
        self.consumer_lag = Gauge("warden_consumer_lag",
                                  "Input records not yet handled, per input topic and partition",
                                  ["topic", "partition"], registry=registry)
        self.aligning = Gauge("warden_alignment_held",
                              "Inputs waiting for the other input topics to reach their event time",
                              ["partition"], registry=registry)
        self.skipped_offsets = Counter("warden_consumer_skipped_offsets_total",
                                       "Offsets of Warden's topics the consumer passed without "
                                       "handling them (expected: 0; see the worker's log)",
                                       registry=registry)
        self.align_timeouts = Counter("warden_alignment_timeouts_total",
                                      "Inputs released after waiting WARDEN_ALIGN_MS for a quiet "
                                      "input topic", registry=registry)
        self.align_pauses = Counter("warden_alignment_pauses_total",
                                    "Input topic-partitions paused while their partition's "
                                    "alignment buffer was crowded with inputs ahead of its "
                                    "earliest", registry=registry)
        self.out_of_order = Counter("warden_inputs_out_of_order_total",
                                    "Inputs applied after a later input of their partition, "
                                    "so not in replay's order (expected: 0; more means "
                                    "WARDEN_ALIGN_MS is shorter than the producers' lag)",
                                    ["topic"], registry=registry)
        self.in_flight = Gauge("warden_hops_in_flight",
                               "Cross-key requests (device checks, report weighing) awaiting "
                               "their reply, per account partition", ["partition"],
                               registry=registry)
        self.paused = Gauge("warden_inputs_paused",
                            "1 while a partition's input topics are paused for their replies "
                            "to catch up (WARDEN_MAX_IN_FLIGHT)", ["partition"], registry=registry)
        self.settled = Counter("warden_inputs_settled_total",
                               "Inputs fully handled: applied (with their cross-key reply), "
                               "ignored as duplicates or dead-lettered", registry=registry)
        self.pauses = Counter("warden_input_pauses_total",
                              "Times a partition's input topics were paused for their replies",
                              registry=registry)
        self.hop_held = Gauge("warden_device_requests_held",
                              "Device-stage requests waiting for every account partition's "
                              "event-time frontier to pass them, per device partition",
                              ["partition"], registry=registry)
        self.hop_timeouts = Counter("warden_device_request_timeouts_total",
                                    "Device-stage requests applied after waiting "
                                    "WARDEN_HOP_WAIT_MS, before every frontier passed them",
                                    registry=registry)
        self.batch_size = Histogram("warden_batch_events", "Records per processed batch",
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
                                    registry=registry)
        self.record_bytes = Histogram(
            "warden_account_record_bytes",
            "Per account-stage batch, its largest account record written (a hot account's: "
            "writes fail past 16 MiB, streams/app.py RECORD_MAX_BYTES)",
            buckets=(1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216),
            registry=registry)

    def event_in(self, topic: str, count: int = 1) -> None:
        """`warden_events_total{topic}` + `count`, with the labelled child looked up once per
        topic (prometheus-client's `labels()` was 2% of the account stage's time, once per
        input)."""
        child = self._events_by_topic.get(topic)
        if child is None:
            child = self._events_by_topic[topic] = self.events.labels(topic)
        child.inc(count)

    def decided(self, decision: Decision) -> None:
        for trigger in decision.triggers or ("none",):
            self.decisions.labels(decision.type, trigger).inc()
