"""The account stage's record: one changelog value per account, encoded incrementally."""

from __future__ import annotations

import orjson
from prometheus_client import CollectorRegistry

from detectors.config import DEFAULT_POLICY
from streams.metrics import Metrics
from streams.records import AccountRecord, load_account
from streams.stages import AccountStage
from streams.topics import TopicNames


def test_ids_seen_after_an_encoding_are_appended_to_it_and_decode_back():
    record = load_account(None)
    record.see("ev-1", 100)
    first = record.encode()
    record.see('ev-"2"', 200)   # an id that needs escaping
    record.see("ev-3", 300)
    appended = record.encode()
    fresh = AccountRecord(record.state, dict(record.seen), record.pending).encode()
    assert appended == fresh
    assert first != appended
    assert load_account(appended).seen == {"ev-1": 100, 'ev-"2"': 200, "ev-3": 300}


def test_an_id_seen_again_after_the_horizon_changes_its_time_in_the_encoding():
    record = load_account(None)
    record.see("ev-1", 100)
    record.see("ev-2", 150)
    record.encode()
    record.see("ev-1", 900)     # re-applied once the dedupe horizon passed
    assert orjson.loads(record.encode())[1] == {"ev-1": 900, "ev-2": 150}


def stage(accounts: dict[bytes, bytes], cap: int) -> AccountStage:
    return AccountStage(policy=DEFAULT_POLICY, names=TopicNames("", "warden"), partitions=3,
                        accounts=accounts, clocks={}, metrics=Metrics(CollectorRegistry()),
                        decoded_cap=cap)


def encoded_with(seen: dict[str, int]) -> bytes:
    empty = load_account(None)
    value = AccountRecord(empty.state, seen, empty.pending).encode()
    assert value is not None
    return value


def test_decoded_records_are_kept_between_batches_up_to_the_cap():
    table = {b"a": encoded_with({"ev-a": 1}), b"b": encoded_with({"ev-b": 2})}
    s = stage(table, cap=1)
    a = s.decoded(b"a")
    assert s.decoded(b"a") is a            # cached
    b = s.decoded(b"b")                   # evicts a, the least recently used
    assert s.decoded(b"b") is b
    again = s.decoded(b"a")
    assert again is not a and again.seen == {"ev-a": 1}   # reloaded from the table


def test_a_rebalance_forgets_every_decoded_record():
    table = {b"a": encoded_with({"ev-a": 1})}
    s = stage(table, cap=10)
    s.decoded(b"a")
    table[b"a"] = encoded_with({"ev-a": 1, "ev-z": 9})  # what recovery read
    s.forget_partitions(range(3))
    assert s.decoded(b"a").seen == {"ev-a": 1, "ev-z": 9}
