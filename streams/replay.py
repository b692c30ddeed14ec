"""`warden replay`: the detectors over a JSONL file, no Kafka (SPEC "Interfaces").

Input lines are `{"topic": ..., "value": {...}}`; output is one decision per
line in emission order; every invalid line becomes one DLQ object and never
aborts the run. Only an unreadable input file is an error (exit status 2).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import IO

import orjson

from detectors.config import DEFAULT_POLICY, Policy, PolicyError, load_policy
from detectors.decisions import Decision
from detectors.engine import DUPLICATE, Engine
from detectors.events import (
    DECODERS,
    MAX_MESSAGE_BYTES,
    Event,
    InvalidInput,
    Rejected,
    decode_object,
)


@dataclass
class ReplayStats:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0


def parse_line(line: bytes) -> tuple[str | None, Event | Rejected]:
    """One replay line → (topic, event or rejection)."""
    if len(line) > MAX_MESSAGE_BYTES + 128:
        return None, Rejected("too_large", f"line is {len(line)} bytes, max {MAX_MESSAGE_BYTES}")
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return None, Rejected("invalid_json", f"not JSON: {exc}"[:200])
    if type(obj) is not dict:
        return None, Rejected("not_object", "a replay line must be an object with topic and value")
    topic = obj.get("topic")
    if type(topic) is not str:
        return None, Rejected("missing_field", "a replay line needs a string 'topic'")
    if "value" not in obj:
        return topic, Rejected("missing_field", "a replay line needs a 'value'")
    return topic, decode_object(topic, obj["value"])


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for a batch run (`warden replay`, the bench).

    The engine's state is millions of small, acyclic frozen values that
    reference counting frees on its own (a 1M-event replay leaves nothing for
    `gc.collect()` to find), so generational collections only re-walk live
    state: they took a 1M-event replay from 35 s to 48 s. What the run built is then
    frozen (moved out of the collector's view) rather than walked by the first
    collection after re-enabling.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def replay_lines(lines: Iterator[bytes], engine: Engine, out: IO[bytes], dlq: IO[bytes] | None,
                 *, until_ms: int | None = None) -> ReplayStats:
    stats = ReplayStats()
    started = time.perf_counter()
    write, feed, tally = out.write, engine.feed, stats.decisions
    loads, decoders, max_line = orjson.loads, DECODERS, MAX_MESSAGE_BYTES + 128
    decisions: list[Decision] = []
    count = accepted = duplicates = 0
    for number, raw in enumerate(lines, start=1):
        # parse_line's common case (and decode_object's), inlined, on the line as read (JSON
        # allows the newline; not copying a stripped line saves a little on every line).
        # Every other line, stripped, and every invalid value go through them for their
        # rejection.
        try:
            obj = loads(raw) if len(raw) <= max_line else None
        except orjson.JSONDecodeError:
            obj = None
        parsed: Event | Rejected
        if type(obj) is dict and type(topic := obj.get("topic")) is str \
                and type(value := obj.get("value")) is dict \
                and (decoder := decoders.get(topic)) is not None:
            count += 1
            try:
                parsed = decoder(value)
            except InvalidInput:
                parsed = decode_object(topic, value)
        else:
            line = raw.strip()
            if not line:
                continue
            count += 1
            topic, parsed = parse_line(line)
        if type(parsed) is Rejected:
            _reject(dlq, stats, number, topic, parsed)
            continue
        status = feed(parsed, decisions)  # type: ignore[arg-type]
        if status is DUPLICATE:
            duplicates += 1
            decisions.clear()  # unchanged: lifts a duplicate makes due are not written (a gap)
            continue
        accepted += 1
        if status is not None:
            _reject(dlq, stats, number, topic, status)
        if decisions:
            for decision in decisions:
                tally[decision.type] += 1
                write(decision.to_json() + b"\n")
            decisions.clear()
    stats.lines, stats.accepted, stats.duplicates = count, accepted, duplicates
    if until_ms is not None:
        for decision in engine.advance(until_ms):
            tally[decision.type] += 1
            write(decision.to_json() + b"\n")
    stats.seconds = time.perf_counter() - started
    return stats


def _reject(dlq: IO[bytes] | None, stats: ReplayStats, number: int, topic: str | None,
            rejected: Rejected) -> None:
    stats.rejected[rejected.code] += 1
    if dlq is not None:
        dlq.write(orjson.dumps({"line": number, "topic": topic, "error": rejected.code,
                                "detail": rejected.detail}) + b"\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="JSONL file of {topic, value} lines ('-' = stdin)")
    parser.add_argument("--policy", help="policy TOML (default: built-in defaults)")
    parser.add_argument("--until", type=int, metavar="TS",
                        help="advance the clock to TS (ms) at the end, firing due lifts")
    parser.add_argument("--out", default="-", help="decisions JSONL (default stdout)")
    parser.add_argument("--dlq", help="dead-letter JSONL for invalid lines (default: discard, counted)")
    parser.add_argument("--quiet", action="store_true", help="no summary on stderr")
    parser.add_argument("--compare", nargs=2, metavar=("OLD.toml", "NEW.toml"),
                        help="back-test: which accounts would gain, lose or change restrictions "
                             "under NEW compared with OLD (report instead of decisions)")
    parser.add_argument("--json", action="store_true", help="with --compare: the report as JSON")


def load_policy_arg(path: str | None) -> Policy:
    return DEFAULT_POLICY if path is None else load_policy(path)


def run(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(args)
    try:
        policy = load_policy_arg(args.policy)
    except PolicyError as exc:
        print(f"warden replay: {exc}", file=sys.stderr)
        return 2
    with ExitStack() as stack:
        try:
            source = sys.stdin.buffer if args.input == "-" else stack.enter_context(open(args.input, "rb"))
        except OSError as exc:
            print(f"warden replay: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
            return 2
        out = sys.stdout.buffer if args.out == "-" else stack.enter_context(open(args.out, "wb"))
        dlq = stack.enter_context(open(args.dlq, "wb")) if args.dlq else None
        try:
            with collector_paused():
                stats = replay_lines(iter(source), Engine(policy), out, dlq, until_ms=args.until)
        except OSError as exc:
            print(f"warden replay: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
            return 2
    if not args.quiet:
        print(summary(stats, policy), file=sys.stderr)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from streams import backtest

    try:
        old, new = (load_policy(path) for path in args.compare)
    except PolicyError as exc:
        print(f"warden replay --compare: {exc}", file=sys.stderr)
        return 2
    try:
        source = sys.stdin.buffer if args.input == "-" else open(args.input, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"warden replay: cannot read {args.input}: {exc.strerror}", file=sys.stderr)
        return 2
    with source, collector_paused():
        return backtest.run(args, source, old, new)


def summary(stats: ReplayStats, policy: Policy) -> str:
    rate = stats.lines / stats.seconds if stats.seconds else 0.0
    decisions = ", ".join(f"{k} {v}" for k, v in sorted(stats.decisions.items())) or "none"
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(stats.rejected.items())) or "none"
    return (f"replayed {stats.lines} lines in {stats.seconds:.2f}s ({rate:,.0f}/s), policy "
            f"{policy.version}: accepted {stats.accepted}, duplicates {stats.duplicates}; "
            f"decisions: {decisions}; rejected: {rejected}")
