"""A batch closes when it is full, when its window ends, or when the input goes quiet."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import faust
import pytest

from streams.batching import BatchingStream

pytestmark = pytest.mark.asyncio


def collector(*, max_: int, within: float, quiet: float,
              unread: Callable[[], bool] = lambda: False) -> tuple[faust.types.AgentT, list]:
    """An agent whose batches (lists of values) land in the returned list."""
    app = faust.App("test-batching", store="memory://", Stream=BatchingStream,
                    autodiscover=False)
    batches: list[list[int]] = []

    @app.agent()
    async def collect(stream):
        async for events in stream.take_batches(max_, within=within, quiet=quiet,
                                                unread=unread):
            batches.append([event.value for event in events])

    return collect, batches


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)


async def test_a_batch_closes_when_nothing_more_arrives_not_when_its_window_ends():
    agent, batches = collector(max_=100, within=60.0, quiet=0.01)
    async with agent.test_context() as ctx:
        for value in range(3):
            await ctx.put(value)
        await until(lambda: batches)  # well before the 60 s window
    assert batches == [[0, 1, 2]]


async def test_a_full_batch_is_yielded_at_once_and_never_holds_more_than_max():
    agent, batches = collector(max_=5, within=60.0, quiet=0.01)
    async with agent.test_context() as ctx:
        for value in range(12):
            await ctx.put(value)
        await until(lambda: sum(map(len, batches)) == 12)
    assert batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]


async def test_a_quiet_moment_does_not_close_a_batch_while_more_is_waiting_for_the_stream():
    calls: list[bool] = []
    more_coming = [True, True]

    def unread() -> bool:
        calls.append(True)
        return bool(more_coming)

    agent, batches = collector(max_=100, within=60.0, quiet=0.01, unread=unread)
    async with agent.test_context() as ctx:
        await ctx.put(0)
        await until(lambda: calls)        # quiet, but the consumer says more is coming
        await ctx.put(1)
        more_coming.clear()
        await until(lambda: batches)
    assert batches == [[0, 1]]


async def test_the_window_bounds_a_batch_however_much_is_said_to_be_coming():
    agent, batches = collector(max_=100, within=0.05, quiet=0.01, unread=lambda: True)
    async with agent.test_context() as ctx:
        await ctx.put(0)
        await until(lambda: batches)
        await ctx.put(1)
        await until(lambda: len(batches) == 2)
    assert batches == [[0], [1]]
