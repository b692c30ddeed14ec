"""Dead-letter records (docs/CONTRACTS.md): the input as received, plus why.

A key or value longer than MAX_KEPT_BYTES is kept as its first MAX_KEPT_BYTES bytes plus its
size and SHA-256 (`value_truncated`, `value_bytes`, `value_sha256`; same for the key). Without
the cap, a message near Kafka's 1 MB limit that is not UTF-8 (base64: 4/3 larger) or full of
characters JSON escapes (up to 6x) made a dead letter the broker refuses, and the agent that
could not send it stalled its partition: one hostile message halted processing. Every input
under the decoder's size cap is still kept whole; a longer one stays in its own topic at
`partition`/`offset`.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from detectors.events import MAX_MESSAGE_BYTES, Rejected

MAX_KEPT_BYTES = MAX_MESSAGE_BYTES  # worst case 6x after JSON escaping: ~400 KB each, < 1 MB


def _text(raw: bytes | None) -> tuple[str | None, str]:
    if raw is None:
        return None, "utf-8"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def _kept(name: str, raw: bytes | None) -> dict[str, Any]:
    """`name`, `name_encoding` and, when cut, `name_truncated`/`_bytes`/`_sha256`."""
    if raw is None or len(raw) <= MAX_KEPT_BYTES:
        text, encoding = _text(raw)
        return {name: text, f"{name}_encoding": encoding}
    head = raw[:MAX_KEPT_BYTES]
    for trim in range(4):  # do not turn UTF-8 into base64 by cutting inside a character
        try:
            text, encoding = head[:len(head) - trim].decode("utf-8"), "utf-8"
            break
        except UnicodeDecodeError:
            continue
    else:
        text, encoding = base64.b64encode(head).decode("ascii"), "base64"
    return {name: text, f"{name}_encoding": encoding, f"{name}_truncated": True,
            f"{name}_bytes": len(raw), f"{name}_sha256": hashlib.sha256(raw).hexdigest()}


def dead_letter(topic: str, partition: int | None, offset: int | None, key: bytes | None,
                value: bytes | None, rejected: Rejected, *, rejected_at: int) -> bytes:
    record: dict[str, Any] = {
        "topic": topic, "partition": partition, "offset": offset,
        **_kept("key", key), **_kept("value", value),
        "error": rejected.code, "detail": rejected.detail, "rejected_at": rejected_at,
    }
    return orjson.dumps(record)
