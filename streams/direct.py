"""Fetched records handed to a stage in lists, past Faust's per-record stream path (issue #5).

Faust hands each fetched record to an agent one at a time: the conductor builds an
`Event` and puts it on the agent's channel queue, the stream takes it off, runs its
processors and sensor hooks, and acks it with an `await` per event. A no-op agent on
Warden's consumer spends about 38 µs of CPU per record on that path (bench/perf.py's
stage Bw, 30,000 against 120,000 events), against about 2 µs for aiokafka's own
fetching and decoding (stage A). Warden's stages take records in batches anyway, so
`WardenConsumer._drain_messages` appends each record of a sink's topics to its
`RecordSink` instead, and the stage's agent takes lists from it (`RecordSink.batches`).

What the stream path did for these records is done here, once per record or batch:
the consumer tracks each record as unacknowledged when it is handed over (so a
rebalance waits for the batch being handled, `Consumer.wait_empty`), each is acked
after the batch that took it was handled (its next iteration), and the sink is emptied
with the streams' buffers when the flow resumes after a rebalance (the records are read
again from the committed offsets). A full sink makes the drain loop wait, as a full
stream buffer did.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable
from time import monotonic
from typing import Any

SINK_MAX = 4096  # records handed over and not taken yet (Faust's stream buffer's default)


class RecordSink:
    """Records of `topics` handed over by the drain loop, taken by one stage in lists."""

    def __init__(self, topics: Iterable[str], *, maxsize: int = SINK_MAX,
                 inbound: dict[Any, float] | None = None,
                 on_drop: Callable[[list[Any]], object] = lambda records: None) -> None:
        self.topics = frozenset(topics)
        self.maxsize = maxsize
        self.on_drop = on_drop  # records dropped by `clear`: no longer waited for
        self.records: list[Any] = []  # faust Messages, in the order they were handed over
        self._wake: asyncio.Future[None] | None = None  # the batch loop's pause
        self._room: asyncio.Future[None] | None = None  # the drain loop waiting for space
        self._full_at: int | None = None  # a batch being filled: this many records wake it
        # Faust's monitor's view of when a stream last took a record of each partition (its
        # consumer logs a stream that takes nothing as stuck): kept for these partitions
        self._inbound = inbound

    # --- the drain loop's side ------------------------------------------------------------
    def put(self, message: Any) -> bool:
        """Hand a record over; False (and not taken) when the sink is full."""
        records = self.records
        if len(records) >= self.maxsize:
            return False
        records.append(message)
        if len(records) == 1 or len(records) == self._full_at:
            self._rouse()
        return True

    async def room(self) -> None:
        """Until the sink has space again (or was emptied)."""
        while len(self.records) >= self.maxsize:
            self._room = asyncio.get_running_loop().create_future()
            try:
                await self._room
            finally:
                self._room = None

    def clear(self) -> None:
        """Drop what no batch took yet: Faust calls this with the streams' buffers when a
        rebalance begins and when the flow resumes after it (`FlowControlEvent.manage_queue`).
        The dropped records are handed to `on_drop`, for the consumer to stop waiting for
        their acks: the rebalance waits for every record tracked and not acked
        (`Consumer.wait_empty`), and these will never be. Faust's own dropped events leave
        its weak set of unacked records once nothing refers to them; the drain loop still
        refers to the last record it handed over, so a dropped one stalled the rebalance
        until the group evicted the worker (bench/perf.py's stage D2, 2026-12-07)."""
        dropped = self.records[:]
        self.records.clear()
        if dropped:
            self.on_drop(dropped)
        self._make_room()

    # --- the stage's side -----------------------------------------------------------------
    async def batches(self, max_: int, *, within: float, quiet: float,
                      ack: Callable[[Any], object],
                      unread: Callable[[], bool] = lambda: False,
                      due: Callable[[], float | None] = lambda: None,
                      ) -> AsyncGenerator[list[Any], None]:
        """Lists of at most `max_` records: each yielded once full, `within` seconds after
        its first record, or after `quiet` seconds without a new one unless `unread()` says
        more is already on its way. Each record is passed to `ack` once the caller has
        handled its list (the next iteration). An empty list comes when `due()` (seconds
        until the caller has work without any record; None: none) runs out while no record
        is waiting, at most once per `quiet`."""
        loop = asyncio.get_running_loop()
        last_empty = -quiet
        records = self.records
        while True:
            if not records:
                wait = due()
                if wait is None or wait > 0 or loop.time() - last_empty < quiet:
                    await self._pause(within if wait is None else max(min(within, wait), quiet))
                    continue
                last_empty = loop.time()  # the caller's work is due: an empty batch
            else:
                closes = loop.time() + within
                while len(records) < max_:
                    seen = len(records)
                    left = closes - loop.time()
                    if left <= 0:
                        break
                    await self._pause(min(quiet, left), full_at=max_)
                    if len(records) == seen and not unread():
                        break  # quiet: the consumer has nothing more for now
            batch = records[:max_]
            del records[:max_]
            self._make_room()
            if batch and self._inbound is not None:
                self._inbound.update(dict.fromkeys({m.tp for m in batch}, monotonic()))
            yield batch
            # (not when the caller raised: an unhandled record must not be committed)
            for message in batch:
                ack(message)

    # --- wake-ups ---------------------------------------------------------------------------
    async def _pause(self, seconds: float, *, full_at: int | None = None) -> None:
        """Sleep up to `seconds`; a first record, or `full_at` records, wakes it early."""
        loop = asyncio.get_running_loop()
        self._wake = loop.create_future()
        self._full_at = full_at
        timer = loop.call_later(seconds, self._rouse)
        try:
            await self._wake
        finally:
            timer.cancel()
            self._wake = self._full_at = None

    def _rouse(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _make_room(self) -> None:
        if self._room is not None and not self._room.done():
            self._room.set_result(None)
