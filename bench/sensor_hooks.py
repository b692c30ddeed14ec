"""Cost of Faust's four per-record sensor hooks: stock `PrometheusMonitor` against Warden's
`WardenMonitor` (streams/sensors.py), measured in the same run.

    python bench/sensor_hooks.py [--records 200000]

Each monitor gets its own registry and the hooks Faust calls for every record a stream
takes (message in, stream event in, stream event out, message out), for records spread
over 5 topics x 4 partitions as a worker sees them. Prints microseconds per record and the
ratio; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import faust
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from prometheus_client import CollectorRegistry

from streams.sensors import WardenMonitor


class _Message:
    __slots__ = ("offset", "partition", "time_in", "time_out", "time_total", "timestamp",
                 "topic")

    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self.topic, self.partition, self.offset, self.timestamp = topic, partition, offset, 0.0
        self.time_in = self.time_out = self.time_total = None


class _Event:
    __slots__ = ("message",)

    def __init__(self, message: _Message) -> None:
        self.message = message


def per_record_us(monitor: PrometheusMonitor, stream: Any, records: int) -> float:
    tps = [TP(f"topic-{t}", p) for t in range(5) for p in range(4)]
    messages = [_Message(tp.topic, tp.partition, i) for i, tp in enumerate(tps)]
    events = [_Event(m) for m in messages]
    started = time.perf_counter()
    for i in range(records):
        j = i % len(tps)
        tp, message, event = tps[j], messages[j], events[j]
        monitor.on_message_in(tp, i, message)
        state = monitor.on_stream_event_in(tp, i, stream, event)
        monitor.on_stream_event_out(tp, i, stream, event, state)
        monitor.on_message_out(tp, i, message)
    return (time.perf_counter() - started) / records * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args(argv)
    app = faust.App("sensor-hooks", broker="kafka://localhost:1", store="memory://",
                    autodiscover=False)
    stream = app.stream(app.topic("topic-0"))
    stream.task_owner = object.__new__(type("Owner", (), {}))  # (Faust's monitor keys by it)
    stock = PrometheusMonitor(metrics=FaustMetrics.create(CollectorRegistry(), "faust"))
    lean = WardenMonitor(metrics=FaustMetrics.create(CollectorRegistry(), "faust"))
    rounds = {"stock": [], "warden": []}
    for _ in range(3):  # interleaved, best of three each (a noisy machine)
        rounds["stock"].append(per_record_us(stock, stream, args.records))
        rounds["warden"].append(per_record_us(lean, stream, args.records))
    stock_us, lean_us = min(rounds["stock"]), min(rounds["warden"])
    print(f"per record, four hooks, best of 3 x {args.records:,} records:")
    print(f"  PrometheusMonitor (stock)   {stock_us:6.2f} us")
    print(f"  WardenMonitor               {lean_us:6.2f} us   ({lean_us / stock_us:.2f} x stock)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
