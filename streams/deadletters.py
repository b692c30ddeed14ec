"""Dead-letter records (docs/CONTRACTS.md): the input as received, plus why."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from detectors.events import Rejected


def _text(raw: bytes | None) -> tuple[str | None, str]:
    if raw is None:
        return None, "utf-8"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def dead_letter(topic: str, partition: int | None, offset: int | None, key: bytes | None,
                value: bytes | None, rejected: Rejected, *, rejected_at: int) -> bytes:
    key_text, key_encoding = _text(key)
    value_text, value_encoding = _text(value)
    record: dict[str, Any] = {
        "topic": topic, "partition": partition, "offset": offset,
        "key": key_text, "key_encoding": key_encoding,
        "value": value_text, "value_encoding": value_encoding,
        "error": rejected.code, "detail": rejected.detail, "rejected_at": rejected_at,
    }
    return orjson.dumps(record)
