"""streams/records.py: what the account stage keeps per account."""

from __future__ import annotations

import tracemalloc

import orjson

from detectors import account, codec
from streams.records import AccountRecord, Pending, compact, load_account


def test_a_kept_value_costs_its_size_not_the_block_orjson_wrote_it_into():
    tracemalloc.start()
    try:
        kept = [compact(orjson.dumps({"account_id": f"acct-{i:06d}", "ts": i}))
                for i in range(200)]
        per_value = tracemalloc.get_traced_memory()[0] / len(kept)
    finally:
        tracemalloc.stop()
    assert kept[7] == b'{"account_id":"acct-000007","ts":7}'
    assert per_value < 200  # each value is about 40 bytes long; orjson's own output, 4 KiB


# --- a hot account's dedupe ids (SeenIds) ------------------------------------------------------

def hot_record(ids: int, start: int = 1_000) -> AccountRecord:
    record = AccountRecord(account.EMPTY, {}, Pending())
    for i in range(ids):
        record.seen[f"e{i}"] = start + i
    return record


def test_every_128_ids_are_sealed_and_written_from_then_on_as_they_were_encoded():
    record = hot_record(300)
    assert len(record.seen) == 300 and len(record.seen.sealed) == 2 and len(record.seen.open) == 44
    assert record.seen.sealed[1][0] == 1_000 + 255  # (the newest time in the chunk)
    loaded = load_account(record.encode())
    assert loaded.seen == record.seen  # every id, with its time
    assert loaded.seen.sealed == record.seen.sealed  # byte for byte: not encoded again
    assert loaded.encode() == record.encode()


def test_a_record_written_before_the_chunks_loads_whole_and_is_sealed():
    ids = {f"e{i}": 1_000 + i for i in range(200)}
    raw = orjson.dumps([orjson.Fragment(codec.encode_account(account.EMPTY)), ids, None])
    loaded = load_account(raw)
    assert loaded.seen == ids and len(loaded.seen.sealed) == 1 and loaded.seen.open == {}
    assert load_account(loaded.encode()).seen == ids


def test_an_id_seen_again_keeps_its_newer_time_after_a_round_trip():
    record = hot_record(130)  # e0 is in the sealed chunk
    record.seen["e0"] = 9_999  # seen again past the horizon
    assert load_account(record.encode()).seen["e0"] == 9_999


def test_a_small_record_is_encoded_as_before_the_chunks():
    record = hot_record(3)
    assert len(orjson.loads(record.encode())) == 3  # [state, ids, pending]


def test_ids_older_than_a_cutoff_go_a_whole_sealed_chunk_at_a_time():
    record = hot_record(300)  # chunks of e0-e127 and e128-e255, open e256-e299
    assert record.seen.without_older(1_000) is None  # nothing older
    kept = record.seen.without_older(1_000 + 200)
    assert kept is not None
    assert "e127" not in kept and "e128" in kept  # (e128's chunk has e200 and later)
    assert "e299" in kept and len(kept.sealed) == 1
    kept = record.seen.without_older(1_000 + 290)
    assert kept is not None and set(kept) == {f"e{i}" for i in range(290, 300)}
