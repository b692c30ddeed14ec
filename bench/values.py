"""Constructing and (de)coding the core's values: the generic way against Warden's, one run.

    python bench/values.py [--rounds 200000]

Each line times one operation both ways in the same process, alternating, best of five,
and prints the ratio (so a noisy machine compares like with like):
- a 12-field frozen message (`AccountOnDevice`) built by the `__init__` dataclasses
  generate, against `detectors.values.fast_init`'s;
- an internal message decoded by a loop over its fields (detectors/codec.py before the
  third session of 2026-12-07) against the unrolled per-message decoder; the same for
  encoding.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import orjson

from detectors import codec
from detectors.messages import AccountOnDevice

USE = AccountOnDevice("e1>dev", 1767225600000, "dev-000123", "acct-000042", True, False, 0,
                      (), None, "e1", (), 3)
FIELDS = [getattr(USE, f.name) for f in dataclasses.fields(AccountOnDevice)]
# the same class with the __init__ dataclasses generate for a frozen class
Generated = dataclasses.dataclass(frozen=True, slots=True)(
    type("AccountOnDevice", (), {"__annotations__": AccountOnDevice.__annotations__,
                                 **{f.name: f for f in dataclasses.fields(AccountOnDevice)}}))
SIGNAL_AT = [f in codec.SIGNAL_FIELDS for f in AccountOnDevice.__dataclass_fields__]


def generic_decode(raw: bytes) -> Any:
    """The field loop the codec had: every list through `_tuples`, `cls(*values)`."""
    _tag, *values = orjson.loads(raw)
    return Generated(*[codec._signals_in(v) if signals else codec._tuples(v) if type(v) is list
                       else v for signals, v in zip(SIGNAL_AT, values, strict=False)])


def generic_encode(msg: Any) -> bytes:
    values = [codec._signals_out(getattr(msg, f)) if f in codec.SIGNAL_FIELDS else getattr(msg, f)
              for f in msg.__dataclass_fields__]
    return orjson.dumps(["on_device", *values])


def best_us(fn: Callable[[], Any], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - started) / rounds * 1e6


def compare(name: str, before: Callable[[], Any], after: Callable[[], Any], rounds: int) -> None:
    times: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(5):
        times["before"].append(best_us(before, rounds))
        times["after"].append(best_us(after, rounds))
    b, a = min(times["before"]), min(times["after"])
    print(f"{name:<44} {b:6.2f} us -> {a:6.2f} us   ({a / b:.2f} x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200_000)
    rounds = parser.parse_args().rounds
    raw = codec.encode_message(USE)
    assert codec.decode_message(raw) == USE and generic_encode(USE) == raw
    compare("build a 12-field frozen message", lambda: Generated(*FIELDS),
            lambda: AccountOnDevice(*FIELDS), rounds)
    compare("decode an internal message", lambda: generic_decode(raw),
            lambda: codec.decode_message(raw), rounds)
    compare("encode an internal message", lambda: generic_encode(USE),
            lambda: codec.encode_message(USE), rounds)


if __name__ == "__main__":
    main()
