"""streams/records.py: what the account stage keeps per account."""

from __future__ import annotations

import tracemalloc

import orjson

from streams.records import compact


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
