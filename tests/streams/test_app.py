"""streams/app.py: how the worker paces its input partitions (`Warden._pace_inputs`)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from prometheus_client import CollectorRegistry

from streams.app import Warden
from streams.metrics import Metrics
from streams.settings import Settings

HOUR = 3_600_000


class FakeConsumer:
    def __init__(self) -> None:
        self.log: list[tuple[str, int]] = []

    async def hold_back(self, tps) -> None:
        self.log += [("hold", p) for p in sorted({tp.partition for tp in tps})]

    def resume_partitions(self, tps) -> None:
        self.log += [("resume", p) for p in sorted({tp.partition for tp in tps})]


def worker(frontiers: dict[int, int | None], in_flight: dict[int, int]) -> SimpleNamespace:
    stage = SimpleNamespace(frontier=frontiers.get, in_flight=in_flight)
    fake = SimpleNamespace(settings=Settings(max_in_flight=10, max_ahead_ms=HOUR),
                           account_stage=stage, metrics=Metrics(CollectorRegistry()),
                           app=SimpleNamespace(consumer=FakeConsumer()), paused=set(),
                           ahead=set(), _assigned_account_partitions=lambda: sorted(frontiers))
    return fake


def pace(fake: SimpleNamespace) -> list[tuple[str, int]]:
    fake.app.consumer.log = []
    asyncio.run(Warden._pace_inputs(fake))  # type: ignore[arg-type]
    return fake.app.consumer.log


def test_a_partition_far_ahead_in_event_time_pauses_until_the_slowest_catches_up():
    frontiers = {0: 0, 1: 3 * HOUR}
    fake = worker(frontiers, {})
    assert pace(fake) == [("hold", 1)] and fake.ahead == {1}
    frontiers[0] = 2 * HOUR
    assert pace(fake) == []                       # 1 h ahead: not within half of it yet
    frontiers[0] = 5 * HOUR // 2
    assert pace(fake) == [("resume", 1)] and fake.ahead == set()


def test_a_partition_paused_for_both_reasons_resumes_only_when_neither_holds():
    frontiers = {0: 0, 1: 3 * HOUR}
    in_flight = {1: 10}
    fake = worker(frontiers, in_flight)
    assert pace(fake) == [("hold", 1)] and fake.paused == {1} and fake.ahead == {1}
    in_flight[1] = 0                              # its replies are in, still ahead
    assert pace(fake) == [] and fake.paused == set()
    frontiers[0] = 3 * HOUR
    assert pace(fake) == [("resume", 1)]
