"""How long one sweep call stalls the worker: the state of a simulated workload, swept in one
piece of 5,000 records per table (as before the fifth session of 2026-12-07) and in the
worker's slices (`streams.app.SWEEP_SLICE`), both in the same run.

    python bench/sweep_stall.py [--events 200000] [--accounts N] [--seed 5]

A sweep runs under its stage's state lock, with no await between reading records and
computing their pruned copies: every stage waits for it. Prints the longest call of each
way, over the same 5,000 records per table, and their ratio.
"""

from __future__ import annotations

import argparse
import time

import orjson
from stages_offline import NAMES, Bus, drain, load

from streams import simulate
from streams.app import SWEEP_SLICE, SWEEP_SLICES


def longest_call_ms(bus: Bus, limit: int, calls: int) -> tuple[float, float]:
    """(longest single call, total) in ms over `calls` calls of each stage's sweep."""
    longest = total = 0.0
    for _ in range(calls):
        for sweep in (lambda: bus.account.sweep(assigned=range(bus.partitions), limit=limit),
                      lambda: bus.device.sweep(partitions=bus.partitions,
                                               assigned=range(bus.partitions), limit=limit)):
            started = time.perf_counter()
            sweep()
            took = (time.perf_counter() - started) * 1000
            longest, total = max(longest, took), total + took
    return longest, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--accounts", type=int, default=0, help="default: events / 10")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    start_ms = int(time.time() * 1000) - 7 * 86_400_000
    plan = simulate.plan(accounts=args.accounts or max(1000, args.events // 10),
                         events=args.events, seed=args.seed, start_ms=start_ms)
    bus = Bus(4, 300)
    load(bus, [(NAMES.input(topic), orjson.dumps(value)) for topic, value in plan.events()])
    drain(bus)
    print(f"{len(bus.tables['accounts']):,} account records, "
          f"{len(bus.tables['devices']):,} device records")
    whole = longest_call_ms(bus, SWEEP_SLICE * SWEEP_SLICES, 1)
    sliced = longest_call_ms(bus, SWEEP_SLICE, SWEEP_SLICES)
    print(f"one piece of {SWEEP_SLICE * SWEEP_SLICES:,}: longest call {whole[0]:7.1f} ms, "
          f"all {whole[1]:7.1f} ms")
    print(f"{SWEEP_SLICES} slices of {SWEEP_SLICE:,}:   longest call {sliced[0]:7.1f} ms, "
          f"all {sliced[1]:7.1f} ms")
    print(f"longest stall x{sliced[0] / whole[0]:.2f}; CPU x{sliced[1] / whole[1]:.2f}")


if __name__ == "__main__":
    main()
