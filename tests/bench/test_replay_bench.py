"""bench/replay_throughput.py: a small end-to-end run (only the shape of the numbers is checked)."""

from __future__ import annotations

import sys

import orjson
from bench_loader import load_bench

bench = load_bench("replay_throughput")


def test_bench_generates_a_workload_replays_it_and_reports_memory_per_account(tmp_path, capsys):
    args = ["--events", "4000", "--accounts", "300", "--seed", "3", "--out-dir", str(tmp_path)]
    assert bench.main(args) == 0
    result = orjson.loads((tmp_path / "replay.json").read_bytes())
    assert result["events"] >= 3000
    assert result["replay"]["accepted"] == result["events"]
    written = (tmp_path / "decisions.jsonl").read_bytes().count(b"\n")
    assert result["replay"]["decisions"] == written
    assert result["replay"]["events_per_cpu_s"] > 0 and result["baseline"]["events_per_cpu_s"] > 0
    assert result["memory"]["tracked_accounts"] > 0
    assert result["memory"]["bytes_per_tracked_account"] > 0
    assert "events/s" in capsys.readouterr().out
    # a second run reuses the workload instead of generating it again
    assert bench.main(args) == 0
    assert orjson.loads((tmp_path / "replay.json").read_bytes())["generated_seconds"] == 0.0


def test_deep_size_counts_shared_objects_once():
    shared = ("x" * 100,)
    once = bench.deep_size([shared], set())
    assert bench.deep_size([(shared, shared)], set()) == once + sys.getsizeof((shared, shared))
