"""A stage takes its records in lists: a batch closes when it is full, when its window ends,
or when the input goes quiet; each record is acked once its batch was handled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest

from streams.direct import RecordSink

pytestmark = pytest.mark.asyncio


class Message(NamedTuple):
    """What the sink reads of a Faust message."""

    value: int
    tp: tuple[str, int] = ("friend-adds", 0)


class Collector:
    """A stage's batch loop over a sink: its batches (lists of values) and its acks."""

    def __init__(self, *, max_: int, within: float, quiet: float, maxsize: int = 10_000,
                 unread: Callable[[], bool] = lambda: False,
                 due: Callable[[], float | None] = lambda: None,
                 handling: Callable[[list[int]], Any] | None = None) -> None:
        self.inbound: dict[Any, float] = {}
        self.sink = RecordSink(["friend-adds"], maxsize=maxsize, inbound=self.inbound)
        self.batches: list[list[int]] = []
        self.acked: list[int] = []
        self._args = dict(within=within, quiet=quiet, unread=unread, due=due,
                          ack=lambda m: self.acked.append(m.value))
        self._max, self._handling = max_, handling
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async for batch in self.sink.batches(self._max, **self._args):  # type: ignore[arg-type]
            self.batches.append([m.value for m in batch])
            if self._handling is not None:
                await self._handling(self.batches[-1])

    async def __aenter__(self) -> Collector:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task

    def put(self, *values: int) -> None:
        for value in values:
            assert self.sink.put(Message(value))


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)


async def test_a_batch_closes_when_nothing_more_arrives_not_when_its_window_ends():
    async with Collector(max_=100, within=60.0, quiet=0.01) as c:
        c.put(0, 1, 2)
        await until(lambda: c.batches)  # well before the 60 s window
    assert c.batches == [[0, 1, 2]]


async def test_a_full_batch_is_yielded_at_once_and_never_holds_more_than_max():
    async with Collector(max_=5, within=60.0, quiet=30.0) as c:
        c.put(*range(12))
        await until(lambda: len(c.batches) == 2)  # two full ones, without waiting 30 s
        c.put(12, 13, 14)
        await until(lambda: len(c.batches) == 3)
    assert c.batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14]]


async def test_a_quiet_moment_does_not_close_a_batch_while_more_is_waiting_for_the_stream():
    calls: list[bool] = []
    more_coming = [True, True]

    def unread() -> bool:
        calls.append(True)
        return bool(more_coming)

    async with Collector(max_=100, within=60.0, quiet=0.01, unread=unread) as c:
        c.put(0)
        await until(lambda: calls)        # quiet, but the consumer says more is coming
        c.put(1)
        more_coming.clear()
        await until(lambda: c.batches)
    assert c.batches == [[0, 1]]


async def test_the_window_bounds_a_batch_however_much_is_said_to_be_coming():
    async with Collector(max_=100, within=0.05, quiet=0.01, unread=lambda: True) as c:
        c.put(0)
        await until(lambda: c.batches)
        c.put(1)
        await until(lambda: len(c.batches) == 2)
    assert c.batches == [[0], [1]]


async def test_records_are_acked_only_once_their_batch_was_handled():
    gate = asyncio.Event()

    async def slow(batch: list[int]) -> None:
        await gate.wait()

    async with Collector(max_=100, within=60.0, quiet=0.01, handling=slow) as c:
        c.put(0, 1)
        await until(lambda: c.batches)
        c.put(2)  # handed over while the batch is handled: it waits for the next
        await asyncio.sleep(0.03)
        assert c.acked == [] and c.batches == [[0, 1]]
        gate.set()
        await until(lambda: c.acked == [0, 1, 2])
    assert c.batches == [[0, 1], [2]]


async def test_a_batch_whose_handling_failed_is_not_acked():
    """An unhandled record must not be committed: the worker stops and it is read again."""
    async def fail(batch: list[int]) -> None:
        raise RuntimeError("stage failed")

    c = Collector(max_=100, within=60.0, quiet=0.01, handling=fail)
    c.put(0, 1)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(c._run(), 5)
    assert c.acked == []


async def test_an_empty_batch_comes_when_the_callers_work_is_due_and_nothing_arrived():
    """Held inputs whose wait ended are released by the account stage without a record of
    their partition: `due` says when (seconds from now; None: nothing waits). As in the
    stage, handling a batch is what makes work due."""
    deadline: list[float | None] = [None]

    async def hold_then_release(batch: list[int]) -> None:  # what it holds is due in 20 ms
        deadline[0] = asyncio.get_running_loop().time() + 0.02 if batch else None

    def due() -> float | None:
        return None if deadline[0] is None else deadline[0] - asyncio.get_running_loop().time()

    async with Collector(max_=100, within=60.0, quiet=0.005, due=due,
                         handling=hold_then_release) as c:
        c.put(0)
        await until(lambda: len(c.batches) == 2)
        await asyncio.sleep(0.05)
    assert c.batches == [[0], []]  # one empty batch, then nothing is due


async def test_an_empty_batch_comes_no_more_than_once_per_quiet_period():
    async with Collector(max_=100, within=60.0, quiet=0.05, due=lambda: 0.0) as c:
        await asyncio.sleep(0.12)
    assert 2 <= len(c.batches) <= 4 and all(b == [] for b in c.batches)


async def test_a_full_sink_refuses_a_record_until_a_batch_takes_some():
    gate = asyncio.Event()

    async def slow(batch: list[int]) -> None:
        await gate.wait()

    async with Collector(max_=2, within=60.0, quiet=0.01, maxsize=2, handling=slow) as c:
        c.put(0, 1)
        await until(lambda: c.batches)  # [0, 1] taken: room again
        c.put(2, 3)
        assert not c.sink.put(Message(4))
        room = asyncio.create_task(c.sink.room())
        await asyncio.sleep(0.02)
        assert not room.done()
        gate.set()
        await asyncio.wait_for(room, 5)
        assert c.sink.put(Message(4))
        await until(lambda: c.acked == [0, 1, 2, 3, 4])


async def test_clearing_drops_what_no_batch_took_and_makes_room():
    """Faust clears it with the streams' buffers when the flow resumes after a rebalance:
    those records are read again from the committed offsets."""
    sink = RecordSink(["friend-adds"], maxsize=2)
    assert sink.put(Message(0)) and sink.put(Message(1)) and not sink.put(Message(2))
    room = asyncio.create_task(sink.room())
    sink.clear()
    await asyncio.wait_for(room, 5)
    assert sink.records == []


async def test_clearing_hands_the_dropped_records_over_so_nothing_waits_for_their_acks():
    """Faust also clears it when a rebalance begins, then waits for every record handed
    over and not acked: the dropped ones will never be acked, the consumer untracks them."""
    dropped: list[list[int]] = []
    sink = RecordSink(["friend-adds"], on_drop=lambda records: dropped.append(
        [m.value for m in records]))
    sink.clear()
    assert dropped == []  # (nothing to hand over)
    assert sink.put(Message(0)) and sink.put(Message(1))
    sink.clear()
    assert dropped == [[0, 1]] and sink.records == []


async def test_taking_a_batch_tells_faust_its_partitions_are_being_read():
    """Faust's consumer logs a partition whose stream takes nothing as stuck."""
    async with Collector(max_=100, within=60.0, quiet=0.01) as c:
        c.sink.put(Message(0, ("friend-adds", 3)))
        await until(lambda: c.batches)
    assert set(c.inbound) == {("friend-adds", 3)}
