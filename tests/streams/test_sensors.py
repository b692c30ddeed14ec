"""streams.sensors: Faust's per-record sensor hooks, cheaper, exporting the same numbers."""

from __future__ import annotations

import faust
import pytest
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.sensors import WardenMonitor

# meaningless for a stream read in batches (the module docstring): not kept
DROPPED = ("faust_events_runtime_ms", "faust_active_events")


class Message:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset, self.timestamp = topic, partition, offset, 0.0
        self.time_in = self.time_out = self.time_total = None


@pytest.fixture
def stream():
    app = faust.App("sensors-test", broker="kafka://localhost:1", store="memory://",
                    autodiscover=False)
    stream = app.stream(app.topic("friend-adds"))
    stream.task_owner = type("Owner", (), {})()
    return stream


def samples(registry: CollectorRegistry) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in registry.collect() for s in metric.samples
            if not s.name.startswith(DROPPED) and not s.name.endswith("_created")}


def feed(monitor: PrometheusMonitor, stream, records) -> None:
    for topic, partition, offset in records:
        tp, message = TP(topic, partition), Message(topic, partition, offset)
        monitor.on_message_in(tp, offset, message)
        state = monitor.on_stream_event_in(tp, offset, stream, message)
        monitor.on_stream_event_out(tp, offset, stream, message, state)
    for topic, partition, offset in records[:-2]:  # two still being handled
        monitor.on_message_out(TP(topic, partition), offset, Message(topic, partition, offset))


def test_the_per_record_metrics_are_the_stock_monitors(stream):
    records = [("friend-adds", 0, 10), ("friend-adds", 0, 11), ("friend-adds", 1, 3),
               ("device-signals", 2, 7), ("friend-adds", 0, 12)]
    stock, ours = CollectorRegistry(), CollectorRegistry()
    feed(PrometheusMonitor(metrics=FaustMetrics.create(stock, "faust")), stream, records)
    feed(WardenMonitor(metrics=FaustMetrics.create(ours, "faust")), stream, records)
    assert samples(ours) == samples(stock)
    got = samples(ours)
    assert got[("faust_messages_received_total", ())] == 5
    assert got[("faust_messages_received_per_topic_total", (("topic", "friend-adds"),))] == 4
    assert got[("faust_messages_received_per_topics_partition",
                (("partition", "0"), ("topic", "friend-adds")))] == 12  # the last offset read
    assert got[("faust_active_messages", ())] == 2


def test_faust_consumer_still_sees_when_a_stream_last_took_a_record(stream):
    monitor = WardenMonitor(metrics=FaustMetrics.create(CollectorRegistry(), "faust"))
    tp = TP("friend-adds", 0)
    monitor.on_stream_event_in(tp, 1, stream, None)
    assert tp in monitor.stream_inbound_time


def test_the_worker_app_uses_it(monkeypatch):
    from streams.app import Warden
    from streams.settings import Settings

    monkeypatch.setenv("WARDEN_TOPIC_PREFIX", "sensors-test")
    warden = Warden(Settings.from_env())
    assert isinstance(warden.app.monitor, WardenMonitor)
