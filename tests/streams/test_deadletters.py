"""Dead-letter records always fit a Kafka record and follow schemas/dead-letters.schema.json:
an input is kept whole up to the decoder's size cap, and a longer key or value is cut to its
first 64 KiB with its size and SHA-256 (streams/deadletters.py says why)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft202012Validator

from detectors.events import MAX_MESSAGE_BYTES, Rejected
from streams.deadletters import MAX_KEPT_BYTES, dead_letter

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" /
                     "dead-letters.schema.json").read_text(encoding="utf-8"))
KAFKA_RECORD_LIMIT = 1_000_000  # the producer's default max_request_size
TOO_LARGE = Rejected("too_large", "message is big")


def letter(key: bytes | None, value: bytes | None) -> dict:
    raw = dead_letter("friend-adds", 0, 7, key, value, TOO_LARGE, rejected_at=1)
    assert len(raw) < KAFKA_RECORD_LIMIT
    record = orjson.loads(raw)
    Draft202012Validator(SCHEMA).validate(record)
    return record


def test_an_input_at_the_size_cap_is_kept_whole():
    value = b"\xff" * MAX_MESSAGE_BYTES
    record = letter(b"acct-1", value)
    assert base64.b64decode(record["value"]) == value
    assert "value_truncated" not in record and "key_truncated" not in record


@pytest.mark.parametrize("value", [
    b"\xff" * 900_000,           # not UTF-8: base64 would be 1.2 MB
    b"\x01" * 900_000,           # UTF-8 that JSON escapes to 6 bytes a byte
    b'"' * 900_000,              # escaped to 2 bytes
    "\U0001f600".encode() * 200_000,  # 4-byte characters, cut on a character boundary
], ids=["binary", "control-chars", "quotes", "emoji"])
def test_a_value_over_the_cap_is_cut_with_its_size_and_digest(value):
    record = letter(b"acct-1", value)
    assert record["value_truncated"] is True
    assert record["value_bytes"] == len(value)
    assert record["value_sha256"] == hashlib.sha256(value).hexdigest()
    kept = (record["value"].encode() if record["value_encoding"] == "utf-8"
            else base64.b64decode(record["value"]))
    assert value.startswith(kept) and MAX_KEPT_BYTES - 3 <= len(kept) <= MAX_KEPT_BYTES


def test_an_emoji_value_stays_text_when_cut():
    record = letter(None, "\U0001f600".encode() * 200_000)
    assert record["value_encoding"] == "utf-8" and record["key"] is None


def test_a_huge_key_is_cut_too():
    key = b"\xfe" * 500_000
    record = letter(key, b"{}")
    assert record["key_truncated"] is True and record["key_bytes"] == len(key)
    assert record["value"] == "{}" and "value_truncated" not in record
