"""bench/stages_offline.py: the offline stage driver drains a backlog and decides as replay."""

from __future__ import annotations

import orjson

from detectors.config import load_policy
from detectors.engine import Engine
from detectors.events import Rejected, decode_object
from streams import simulate
from bench_loader import load_bench

offline = load_bench("stages_offline")


def test_the_driver_drains_a_backlog_into_exactly_replays_decisions():
    inputs = list(simulate.generate(accounts=200, events=3000, seed=5, days=3))
    bus = offline.Bus(partitions=4, batch=300)
    offline.load(bus, [(topic, orjson.dumps(value)) for topic, value in inputs])
    offline.drain(bus, most_rounds=5_000)
    assert not bus.busy()

    engine = Engine(load_policy(None))
    want = {}
    for topic, value in inputs:
        event = decode_object(topic, value)
        if not isinstance(event, Rejected):
            for d in engine.process(event).decisions:
                want[d.decision_id] = (d.type, d.at)
    got = {}
    for p in range(4):
        for r in bus.logs.get((offline.NAMES.decisions, p), []):
            d = orjson.loads(r.value)
            got[d["decision_id"]] = (d["type"], d["at"])
    assert want and got == want
