"""A batch closes when it is full, when its window ends, or when the input goes quiet."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import faust
import pytest

from streams.batching import BatchingStream

pytestmark = pytest.mark.asyncio


def collector(*, max_: int, within: float, quiet: float,
              unread: Callable[[], bool] = lambda: False,
              due: Callable[[], float | None] = lambda: None,
              handling: Callable[[list[int]], object] | None = None,
              ) -> tuple[faust.types.AgentT, list]:
    """An agent whose batches (lists of values) land in the returned list; `handling`, if
    given, is awaited with each batch before the next is taken."""
    app = faust.App("test-batching", store="memory://", Stream=BatchingStream,
                    autodiscover=False)
    batches: list[list[int]] = []

    @app.agent()
    async def collect(stream):
        async for events in stream.take_batches(max_, within=within, quiet=quiet,
                                                unread=unread, due=due):
            batches.append([event.value for event in events])
            if handling is not None:
                await handling(batches[-1])

    return collect, batches


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)


async def put_all(ctx: object, values: list[int]) -> None:
    for value in values:
        await ctx.put(value)  # type: ignore[attr-defined]


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


async def test_an_empty_batch_comes_when_the_callers_work_is_due_and_nothing_arrived():
    """Held inputs whose wait ended are released by the account stage without a record of
    their partition: `due` says when (seconds from now; None: nothing waits). As in the
    stage, handling a batch is what makes work due."""
    deadline: list[float | None] = [None]

    async def hold_then_release(batch: list[int]) -> None:  # what it holds is due in 20 ms
        deadline[0] = asyncio.get_running_loop().time() + 0.02 if batch else None

    def due() -> float | None:
        return None if deadline[0] is None else deadline[0] - asyncio.get_running_loop().time()

    agent, batches = collector(max_=100, within=60.0, quiet=0.005, due=due,
                               handling=hold_then_release)
    async with agent.test_context() as ctx:
        await ctx.put(0)
        await until(lambda: len(batches) == 2)
        await asyncio.sleep(0.05)
    assert batches == [[0], []]  # one empty batch, then nothing is due


async def test_an_empty_batch_comes_no_more_than_once_per_quiet_period():
    agent, batches = collector(max_=100, within=60.0, quiet=0.05, due=lambda: 0.0)
    async with agent.test_context():
        await asyncio.sleep(0.12)
    assert 2 <= len(batches) <= 4 and all(b == [] for b in batches)


async def test_an_event_that_arrives_while_an_empty_batch_is_handled_goes_in_the_next():
    """The first events of a batch wait while the caller handles the one before, empty or
    not; none is dropped or acked unhandled."""
    gate = asyncio.Event()
    waits: list[float | None] = [None]

    async def slow(batch: list[int]) -> None:
        if batch == [0]:
            waits[0] = 0.0
        elif not batch:
            waits[0] = None
            await gate.wait()

    agent, batches = collector(max_=100, within=60.0, quiet=0.01, due=lambda: waits[0],
                               handling=slow)
    async with agent.test_context() as ctx:
        await ctx.put(0)
        await until(lambda: len(batches) == 2)  # [0], then an empty one, held in `slow`
        putting = asyncio.create_task(put_all(ctx, [1, 2]))  # (the first waits for `slow`)
        await asyncio.sleep(0.03)
        assert batches == [[0], []]
        gate.set()
        await until(lambda: sum(map(len, batches)) == 3)
        await putting
    assert batches == [[0], [], [1, 2]]
