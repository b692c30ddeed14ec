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


# --- a hot account's dedupe ids (sealed chunks) ------------------------------------------------

def hot_record(ids: int, start: int = 1_000) -> AccountRecord:
    record = AccountRecord(account.EMPTY, {}, Pending())
    for i in range(ids):
        record.seen[f"e{i}"] = start + i
    return record


def test_every_128_ids_are_sealed_when_written_and_written_from_then_on_as_they_were_encoded():
    record = hot_record(300)
    first = record.encode()
    assert len(record.sealed) == 2 and record.unsealed is not None and len(record.unsealed) == 44
    assert record.sealed[1][0] == 1_000 + 255  # (the newest time in the chunk)
    loaded = load_account(first)
    assert loaded.seen == record.seen  # every id, with its time, in the same order
    assert list(loaded.seen) == list(record.seen)
    assert loaded.sealed == record.sealed and loaded.unsealed == record.unsealed  # byte for byte
    assert loaded.encode() == first


def test_a_record_written_before_the_chunks_loads_whole_and_is_sealed_at_its_next_write():
    ids = {f"e{i}": 1_000 + i for i in range(200)}
    raw = orjson.dumps([orjson.Fragment(codec.encode_account(account.EMPTY)), ids, None])
    loaded = load_account(raw)
    assert loaded.seen == ids and loaded.sealed == []
    again = load_account(loaded.encode())
    assert again.seen == ids and len(again.sealed) == 1 and len(again.unsealed) == 72


def test_an_id_seen_again_past_the_horizon_keeps_its_newer_time_after_a_round_trip():
    record = load_account(hot_record(130).encode())  # e0 is in the sealed chunk
    record.see("e0", 9_999)
    again = load_account(record.encode())
    assert again.seen["e0"] == 9_999 and len(again.seen) == 130
    assert len(again.sealed) == 1 and len(again.unsealed) == 2  # (chunks made afresh)


def test_a_small_record_is_encoded_as_before_the_chunks():
    record = hot_record(3)
    assert len(orjson.loads(record.encode())) == 3  # [state, ids, pending]


def test_ids_older_than_a_cutoff_go_a_whole_sealed_chunk_at_a_time():
    record = load_account(hot_record(300).encode())  # chunks e0-e127, e128-e255; e256-e299
    assert not record.forget_seen_before(1_000)  # nothing older
    assert record.forget_seen_before(1_000 + 200)
    assert "e127" not in record.seen and "e128" in record.seen  # (e128's chunk has e200+)
    assert "e299" in record.seen and len(record.sealed) == 1 and len(record.unsealed) == 44
    assert load_account(record.encode()).seen == record.seen
    assert record.forget_seen_before(1_000 + 290)
    assert set(record.seen) == {f"e{i}" for i in range(290, 300)} and record.sealed == [] and record.unsealed is None


def test_past_the_ids_kept_the_oldest_chunk_is_forgotten():
    record = hot_record(700)  # 5 chunks and 60 unsealed, with 512 kept: 4 chunks
    record.encode(ids_kept=512)
    assert len(record.sealed) == 4 and "e127" not in record.seen and "e128" in record.seen
    assert len(record.seen) == 572 and load_account(record.encode(ids_kept=512)).seen == record.seen


def test_the_chunks_kept_fit_in_a_kafka_record_whatever_the_ids_kept():
    record = AccountRecord(account.EMPTY, {}, Pending())
    for i in range(12_000):  # ids of 128 characters: about 1.7 MB of them
        record.seen[f"{i:0128d}"] = 1_000 + i
    value = record.encode(ids_kept=100_000)
    assert value is not None and len(value) < 1_000_000
    assert f"{11_999:0128d}" in load_account(value).seen  # (the newest are kept)
