"""Publish inputs to Kafka at a controlled rate, keyed as the spec says (`simulate --to-kafka`, demo).

Rate control keeps a backfill in event-time order across the five input
topics, as a live service would publish them (README "Time").
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from streams.settings import Settings

CHUNK = 200


def key_for(topic: str, value: dict[str, Any]) -> bytes | None:
    key = value.get("reported_id") if topic == "message-reports" else value.get("account_id")
    return None if key is None else str(key).encode()


async def publish(settings: Settings, inputs: Iterable[tuple[str, dict[str, Any]]], *,
                  rate: float | None = None, total: int | None = None,
                  progress: bool = False) -> int:
    """Send (canonical topic, value) pairs in order; returns how many were sent."""
    producer = AIOKafkaProducer(**settings.aiokafka_options(), acks="all", linger_ms=5)
    await producer.start()
    sent = 0
    started = time.monotonic()
    names = settings.topics
    try:
        for topic, value in inputs:
            await producer.send(names.input(topic), orjson.dumps(value), key=key_for(topic, value))
            sent += 1
            if sent % CHUNK == 0:
                await producer.flush()
                if rate:
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)  # rate control
                if progress:
                    _progress(sent, total, started)
        await producer.flush()
        if progress:
            _progress(sent, total, started, final=True)
    finally:
        await producer.stop()
    return sent


def _progress(sent: int, total: int | None, started: float, *, final: bool = False) -> None:
    """A redrawn bar on a terminal; a line per 10% otherwise (logs, CI)."""
    elapsed = max(time.monotonic() - started, 1e-9)
    rate = f"{sent / elapsed:,.0f}/s"
    if not sys.stderr.isatty():
        step = max(CHUNK, (total or 0) // 10)
        if final or sent % step < CHUNK:
            sys.stderr.write(f"  {sent:,}{f'/{total:,}' if total else ''} events  {rate}\n")
        return
    if total:
        width = 30
        done = int(width * sent / total)
        text = f"\r  [{'#' * done}{'-' * (width - done)}] {sent:,}/{total:,} events  {rate}"
    else:
        text = f"\r  {sent:,} events  {rate}"
    sys.stderr.write(text + ("\n" if final else ""))
    sys.stderr.flush()
