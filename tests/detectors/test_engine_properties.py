"""Properties of the sequential engine (`warden replay`'s core)."""

from __future__ import annotations

import io

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.engine import Engine
from detectors.events import decode_object
from streams import simulate
from streams.replay import replay_lines


def workload(seed: int, accounts: int = 300, events: int = 6000) -> list[tuple[str, dict]]:
    return list(simulate.generate(accounts=accounts, events=events, seed=seed, days=3))


def run(inputs, *, until: int | None = None) -> list[bytes]:
    engine = Engine()
    out = []
    for topic, value in inputs:
        out.extend(d.to_json() for d in engine.process(decode_object(topic, value)).decisions)
    if until is not None:
        out.extend(d.to_json() for d in engine.advance(until))
    return out


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000))
def test_replaying_the_same_file_twice_gives_identical_bytes(seed):
    lines = [orjson.dumps({"topic": t, "value": v}) + b"\n" for t, v in workload(seed)]
    outputs = []
    for _ in range(2):
        out = io.BytesIO()
        replay_lines(iter(lines), Engine(), out, None, until_ms=None)
        outputs.append(out.getvalue())
    assert outputs[0] == outputs[1] and outputs[0]


def components(inputs) -> list[set[str]]:
    """Accounts linked by a report (reporter-reported) or a shared device."""
    parent: dict[str, str] = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a, b):
        parent[find(a)] = find(b)

    for topic, v in inputs:
        if topic == "message-reports":
            union(v["reporter_id"], v["reported_id"])
        else:
            find(v["account_id"])
            if v.get("device_id"):
                union(v["account_id"], "device:" + v["device_id"])
    groups: dict[str, set[str]] = {}
    for x in list(parent):
        if not x.startswith("device:"):
            groups.setdefault(find(x), set()).add(x)
    return list(groups.values())


def owner(topic, v) -> str:
    return v["reported_id"] if topic == "message-reports" else v["account_id"]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10_000))
def test_accounts_sharing_no_reporter_or_device_decide_the_same_alone_or_together(seed):
    inputs = workload(seed, accounts=200, events=3000)
    until = max(v["ts"] for _, v in inputs) + 400 * 86_400_000
    together = {}
    for raw in run(inputs, until=until):
        d = orjson.loads(raw)
        together.setdefault(d["account_id"], []).append(raw)
    groups = components(inputs)
    assert len(groups) > 10
    for group in groups:
        alone = {}
        for raw in run([(t, v) for t, v in inputs if owner(t, v) in group], until=until):
            d = orjson.loads(raw)
            alone.setdefault(d["account_id"], []).append(raw)
        assert alone == {a: together[a] for a in group if a in together}
