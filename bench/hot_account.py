"""What one hot account costs as its dedupe ids pile up: the account stage's CPU per input
of an account that already applied N ids within the dedupe horizon (7 days by default).

    python bench/hot_account.py [--ids 0,1000,10000] [--inputs 2000] [--batch 5]

An account's record keeps the `event_id`s it applied within the horizon, so repeated
inputs are ignored (README "Decisions where the spec is silent"). A bot that sends 1,500
events a day has 10,000 of them; the stage loads its record when a batch touches it and
writes it back, whole, to the changelog after the batch. It keeps at most the policy's
`dedupe_ids_kept` (4,096) of them, so the sizes past that show what a record from before
that bound costs until its first write (the record in the table holds all of them). Each size is run on its own in-memory stages
(bench/stages_offline.py's `Bus`: no Kafka, no Redis) with the same inputs: device signals
and friend adds of that one account, `--batch` records per topic and partition per batch
(a hot account is in most of the worker's batches, with few of its inputs in each).

Prints CPU microseconds per input and changelog bytes written per input, each size against
the first (normally 0 ids), measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import orjson
from stages_offline import NAMES, Bus, drain

from detectors import account
from streams.records import AccountRecord, Pending, compact
from streams.worker import tune_gc

ACCOUNT = "acct-hot"
DAY_MS = 86_400_000


def inputs(n: int, start_ms: int) -> list[tuple[str, bytes]]:
    """`n` inputs of the hot account, one every 2 s of event time: a device signal, then
    friend adds from the same device."""
    out = []
    for i in range(n):
        ts = start_ms + 2_000 * i
        if i % 4 == 0:
            value = {"event_id": f"hot-{i}", "ts": ts, "account_id": ACCOUNT,
                     "device_id": "dev-hot", "emulator": False, "phone_country": "KR",
                     "carrier_verified": True, "virtual_number": False, "ip": "10.0.0.1"}
            out.append((NAMES.input("device-signals"), orjson.dumps(value)))
        else:
            value = {"event_id": f"hot-{i}", "ts": ts, "account_id": ACCOUNT,
                     "friend_id": f"acct-f{i % 50:03d}", "device_id": "dev-hot"}
            out.append((NAMES.input("friend-adds"), orjson.dumps(value)))
    return out


def run(ids: int, n: int, batch: int) -> tuple[float, float]:
    """(CPU us per input, changelog bytes of account records per input) with `ids` applied
    ids already in the account's record, spread over the day before the inputs."""
    start_ms = int(time.time() * 1000) - DAY_MS
    bus = Bus(1, batch)
    seen = {f"old-{i}": start_ms - DAY_MS + i * (DAY_MS // max(ids, 1)) for i in range(ids)}
    value = AccountRecord(account.EMPTY, seen, Pending()).encode()
    if value is not None:
        bus.tables["accounts"][ACCOUNT.encode()] = compact(value)
    for topic, raw in inputs(n, start_ms):
        bus.append(topic, ACCOUNT.encode(), raw, None, bus.wall)
    written = 0
    apply = bus.apply

    def counting(b):  # type: ignore[no-untyped-def]
        nonlocal written
        written += sum(len(v) for (name, _), (_, v) in b.writes.items()
                       if name == "accounts" and v is not None)
        apply(b)

    bus.apply = counting  # type: ignore[method-assign]
    tune_gc()
    started = time.process_time()
    drain(bus)
    seconds = time.process_time() - started
    return 1e6 * seconds / n, written / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", default="0,1000,10000",
                        help="dedupe ids already in the record, comma-separated; the first "
                             "is the baseline")
    parser.add_argument("--inputs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=5,
                        help="records per topic and partition a batch takes at most")
    args = parser.parse_args()
    sizes = [int(s) for s in args.ids.split(",")]
    results = [(ids, *run(ids, args.inputs, args.batch)) for ids in sizes]
    base_us, base_bytes = results[0][1], results[0][2]
    print(f"one account, {args.inputs:,} inputs, at most {args.batch} records per topic per batch")
    print(f"{'ids held':>10} {'us/input':>10} {'x first':>8} {'bytes/input':>12} {'x first':>8}")
    for ids, us, size in results:
        print(f"{ids:>10,} {us:>10.1f} {us / base_us:>8.2f} {size:>12,.0f} {size / base_bytes:>8.2f}")


if __name__ == "__main__":
    main()
