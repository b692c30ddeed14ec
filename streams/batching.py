"""Batches that close when the input goes quiet, not when a fixed window runs out.

Faust's `Stream.take_events(max_, within)` yields when the batch is full or when
`within` has passed since the last batch. Under a backlog batches fill and that is
right; at a steady load below capacity every stage waits out most of its window
whatever arrived. A decision that needs a device answer crosses four such stages
(account stage, device stage, account stage, projector), so at 200 events/s the
50 ms window made most of the end-to-end latency (issue #5).

`BatchingStream.take_batches` closes a batch when it is full, when `within` has
passed since its first event, or when no event arrived for `quiet` seconds: the
consumer has handed over everything it fetched. It waits on a timer of `quiet`,
not on every event, so a backlog costs no more wake-ups than `take_events`.
Everything else (acks after the batch is consumed, no events added while it is)
is Faust's. Registered with the app's `Stream` setting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any

import faust
from faust.types import EventT


class BatchingStream(faust.Stream):
    """Faust's stream with `take_batches` (see the module docstring)."""

    async def take_batches(self, max_: int, *, within: float, quiet: float,
                           unread: Callable[[], bool] = lambda: False,
                           due: Callable[[], float | None] = lambda: None,
                           ) -> AsyncGenerator[Sequence[EventT], None]:
        """Lists of at most `max_` events: each yielded once full, `within` seconds after
        its first event, or after `quiet` seconds without a new one unless `unread()`
        says more is already waiting for the stream. Events are acked once the caller
        has handled the list (its next iteration). An empty list comes when `due()`
        (seconds until the caller has work without any event; None: none) runs out
        while no event is waiting, at most once per `quiet`."""
        events: list[EventT] = []
        consumed = asyncio.Event()
        consuming: asyncio.Future[None] | None = None
        enable_acks = self.enable_acks
        loop = asyncio.get_running_loop()
        # what the batch loop sleeps on: a first event or a full batch wakes it early (a
        # plain future and timer, as mode's wait builds three futures per call)
        wake: asyncio.Future[None] | None = None

        def rouse() -> None:
            if wake is not None and not wake.done():
                wake.set_result(None)

        async def pause(seconds: float) -> None:
            nonlocal wake
            wake = loop.create_future()
            timer = loop.call_later(seconds, rouse)
            try:
                await wake
            finally:
                timer.cancel()
                wake = None

        async def add(value: Any) -> Any:
            nonlocal consuming
            try:
                while consuming is not None:  # the caller is handling a batch: wait for it
                    handling = consuming
                    try:
                        await handling
                    finally:
                        if consuming is handling:  # (not a batch that began since)
                            consuming = None
                event = self.current_event
                if event is None:
                    raise RuntimeError("take_batches found no current event")
                events.append(event)
                if len(events) == 1:
                    rouse()
                if len(events) >= max_:
                    rouse()
                    consumed.clear()
                    await self.wait(consumed)  # never more than max_ in a batch
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.log.exception("Error adding to batch: %r", exc)
                await self.crash(exc)
            return value

        self.enable_acks = False  # acked here, after the caller is done with them
        self.add_processor(add)
        self._enable_passive(aiter(self.channel))
        last_empty = -quiet
        try:
            while not self.should_stop:
                if not events:
                    wait = due()
                    if wait is None or wait > 0 or loop.time() - last_empty < quiet:
                        # then look at should_stop (and `due`) again
                        await pause(within if wait is None else max(min(within, wait), quiet))
                        continue
                    last_empty = loop.time()  # the caller's work is due: an empty batch
                else:
                    closes = loop.time() + within
                    while len(events) < max_:
                        seen = len(events)
                        left = closes - loop.time()
                        if left <= 0:
                            break
                        await pause(min(quiet, left))
                        if len(events) == seen and not unread():
                            break  # quiet: the consumer has nothing more for now
                consuming = handled = loop.create_future()
                batch = list(events)
                try:
                    yield batch
                finally:
                    del events[:len(batch)]
                    for event in batch:
                        await self.ack(event)
                    if not handled.done():
                        handled.set_result(None)
                    consumed.set()
        finally:
            self.enable_acks = enable_acks
            self._processors.remove(add)
