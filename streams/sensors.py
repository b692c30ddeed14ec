"""Faust's Prometheus sensors, with per-record hooks that cost a few counter increments.

Faust calls four sensor hooks for every record it hands to a stream (message in, event in,
event out, message out). Its `PrometheusMonitor` does the base `Monitor`'s bookkeeping in
each (counters by topic, stream and task, timestamps, a runtime deque: they feed Faust's web
stats page, which Warden does not serve) and then looks up labelled Prometheus children by
name (`labels()` validates and sorts the labels each time). That cost 16.4 us per record
on this machine (bench/sensor_hooks.py), most of it for numbers nobody reads: 7% of the
worker's CPU per input event under a backlog (issue #5).

(Warden's stages now take their records in lists past the streams, streams/direct.py,
which runs the two message hooks itself; the stream hooks run for no stage record.)

`WardenMonitor` keeps the same metrics Faust's sensors export, less the two that mean
nothing for a stream read in batches (an event's "runtime" is the time our batching
processor takes to append it, and its "active" gauge is never above one), and looks each
labelled child up once. Everything else (commits, rebalances, produce latency, table
operations, ...) is PrometheusMonitor's own. Installed by streams/app.py after
`setup_prometheus_sensors`, which also serves `/metrics`.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from faust.sensors.prometheus import PrometheusMonitor
from faust.types import TP


class WardenMonitor(PrometheusMonitor):
    """See the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._per_topic: dict[str, Any] = {}
        self._per_partition: dict[TP, Any] = {}
        self._per_stream: dict[Any, Any] = {}

    @classmethod
    def replacing(cls, monitor: PrometheusMonitor) -> WardenMonitor:
        """A monitor writing to the metrics `setup_prometheus_sensors` created."""
        return cls(metrics=monitor._metrics)

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        self.messages_received_total += 1
        self.messages_active += 1
        metrics = self._metrics
        metrics.messages_received.inc()
        metrics.active_messages.inc()
        topic = self._per_topic.get(tp.topic)
        if topic is None:
            topic = self._per_topic[tp.topic] = metrics.messages_received_per_topics.labels(
                topic=tp.topic)
        topic.inc()
        partition = self._per_partition.get(tp)
        if partition is None:
            partition = self._per_partition[tp] = (
                metrics.messages_received_per_topics_partition.labels(
                    topic=tp.topic, partition=tp.partition))
        partition.set(offset)

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> None:
        self.events_total += 1
        # (read by Faust's consumer to tell a slow stream from an idle one)
        self.stream_inbound_time[tp] = monotonic()
        self._metrics.total_events.inc()
        per_stream = self._per_stream.get(stream)
        if per_stream is None:
            label = f"stream.{self._stream_label(stream)}.events"
            per_stream = self._per_stream[stream] = self._metrics.total_events_per_stream.labels(
                stream=label)
        per_stream.inc()
        return None  # (no per-event state: `on_stream_event_out` has nothing to time)

    def on_stream_event_out(self, tp: TP, offset: int, stream: Any, event: Any,
                            state: dict[Any, Any] | None = None) -> None:
        return None

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        self.messages_active -= 1
        self._metrics.active_messages.dec()
