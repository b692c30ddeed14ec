"""bench/perf_report.py: the pure half of the issue #5 harness (no Kafka, no Redis)."""

from __future__ import annotations

import sys

import orjson
import pytest
from bench_loader import load_bench

report = load_bench("perf_report")


def result(**rates: float) -> dict:
    return {"run": {"date": "2026-11-24", "events": 1000, "accounts": 100, "partitions": 4,
                    "cpus": 2},
            "throughput": {k: report.stage(int(v * 10), 10.0) for k, v in rates.items()}}


@pytest.mark.parametrize(("samples", "q", "expected"), [
    ([], 50, None),
    ([7.0], 99, 7.0),
    ([5.0, 1.0, 3.0, 2.0, 4.0], 50, 3.0),
    ([5.0, 1.0, 3.0, 2.0, 4.0], 100, 5.0),
    ([float(i) for i in range(1, 101)], 99, 99.0),
    ([float(i) for i in range(1, 101)], 50, 50.0),
    ([float(i) for i in range(1, 201)], 99, 198.0),
])
def test_percentile_is_nearest_rank(samples, q, expected):
    assert report.percentile(samples, q) == expected


def test_latency_summary_of_no_samples_has_no_percentiles():
    assert report.latency_summary([]) == {"samples": 0, "p50_ms": None, "p99_ms": None,
                                          "max_ms": None}


def test_stage_rate_is_events_over_seconds_and_zero_seconds_gives_zero():
    assert report.stage(1000, 4.0)["events_per_s"] == 250.0
    assert report.stage(5, 0.0)["events_per_s"] == 0.0


def test_ratios_divide_warden_by_each_baseline_and_skip_missing_stages():
    r = report.ratios(result(A=100_000, B=10_000, D=1_000))
    assert r == {"D/A": 0.01, "D/B": 0.1, "D/C": None}


def test_scaling_ratio_appears_only_with_two_workers():
    assert "D2/D" not in report.ratios(result(D=1_000))
    assert report.ratios(result(D=1_000, D2=1_500))["D2/D"] == 1.5


def test_targets_say_met_not_met_or_not_measured():
    r = result(A=40_000, B=10_000, C=2_000, D=10_000)
    r["latency"] = [{"rate": 2000, "seconds": 60, "p99_ms": 300.0, "kept_up": True}]
    r["memory"] = {"bytes_per_idle_account": 900.0, "idle_accounts": 10}
    verdicts = {name: met for name, met, _ in report.targets(r)}
    assert verdicts["D >= 5 x C"] is True
    assert verdicts["D >= B"] is True
    assert verdicts["D >= 0.25 x A (aim)"] is True
    assert verdicts["p99 event->Redis <= 250 ms at 2,000/s"] is False
    assert verdicts["<= 1 KiB per idle tracked account"] is True


def test_memory_target_judges_each_account_past_the_first_round_when_measured():
    """The first round also pays for what the worker grows once (bench/perf_latency.py)."""
    mem = {"idle_accounts": 100_000, "bytes_per_idle_account": 1_137.0,
           "bytes_per_further_idle_account": 509.0}
    _, met, shown = report.idle_target(mem)
    assert met is True
    assert shown == "509 B each past the first 100,000 (those: 1,137 B each)"
    assert report.idle_target({**mem, "bytes_per_further_idle_account": 1_100.0})[1] is False
    r = result(D=1)
    r["memory"] = mem
    table = report.format_table(r)
    assert "the first 100,000 -> 1,137 B each" in table
    assert "the next 100,000 -> 509 B each" in table


def test_memory_target_of_a_result_from_before_the_second_round_judges_the_first():
    assert report.idle_target({"idle_accounts": 10, "bytes_per_idle_account": 1_440.0}) == (
        "<= 1 KiB per idle tracked account", False, "1,440 B")
    assert report.idle_target({})[1] is None


def test_latency_target_is_not_met_when_the_worker_fell_behind():
    r = result(D=1)
    r["latency"] = [{"rate": 2000, "seconds": 60, "p99_ms": 100.0, "kept_up": False}]
    verdicts = {name: met for name, met, _ in report.targets(r)}
    assert verdicts["p99 event->Redis <= 250 ms at 2,000/s"] is False


def test_latency_is_also_listed_per_cause_most_samples_first():
    r = result(D=1)
    r["latency"] = [{"rate": 2000, "seconds": 60, "p50_ms": 300.0, "p99_ms": 600.0,
                     "kept_up": True, "samples": 3, "by_cause": {
                         "friend-adds/friend_add_burst": report.latency_summary([300.0, 310.0]),
                         "moderation-commands/lifted": report.latency_summary([120.0])}}]
    lines = report.format_table(r).splitlines()
    first = next(i for i, line in enumerate(lines) if "friend-adds/friend_add_burst" in line)
    assert "p50    300 ms" in lines[first] and "over 2" in lines[first]
    assert "moderation-commands/lifted" in lines[first + 1]


def test_table_says_how_fast_the_machine_ran_python_at_the_start_and_the_end():
    r = result(D=1)
    r["run"]["python_loop_s"] = {"start": 1.064, "end": 1.341}
    assert ("a pure-Python loop of 10,000,000 additions took 1.06 s at the start, 1.34 s at "
            "the end") in report.format_table(r)


def test_table_lists_stages_ratios_and_marks_a_capped_stage_partial():
    r = result(A=100_000, B=10_000, C=2_000)
    r["throughput"]["D"] = report.stage(300, 1.0, partial=True)
    table = report.format_table(r)
    assert "raw aiokafka" in table and "stock Faust" in table
    assert "(partial: time cap)" in table
    assert "D/B = 0.030" in table
    assert "NOT met" in table


def test_table_says_how_many_event_time_waits_ran_out_in_a_warden_stage():
    r = result(D=1)
    r["throughput"]["D"].update(out_of_order=3, align_timeouts=1_200, hop_timeouts=0,
                                reply_pauses=2)
    assert ("D: 3 inputs out of event-time order, 1,200 alignment waits and 0 device "
            "requests' hop waits ran out; input topics paused for replies 2 times"
            ) in report.format_table(r)


def test_json_has_the_result_ratios_and_targets(tmp_path):
    path = tmp_path / "results" / "perf.json"
    report.write_json(result(A=100_000, D=1_000), path)
    written = orjson.loads(path.read_bytes())
    assert written["throughput"]["D"]["events_per_s"] == 1000.0
    assert written["ratios"]["D/A"] == 0.01
    assert {t["target"] for t in written["targets"]} >= {"D >= B", "D >= 5 x C"}


def test_events_at_interpolates_a_stage_timeline_and_is_none_past_its_end():
    timeline = [(0.0, 0), (5.0, 100), (10.0, 300)]
    assert report.events_at(timeline, 7.5) == 200.0
    assert report.events_at(timeline, 5.0) == 100.0
    assert report.events_at(timeline, 11.0) is None


def test_two_workers_are_compared_with_one_over_the_same_first_seconds():
    r = result(D=500, D2=1_200)
    r["throughput"]["D"]["timeline"] = [(0.0, 0), (10.0, 8_000), (20.0, 12_000)]
    r["throughput"]["D2"]["timeline"] = [(0.0, 0), (10.0, 12_000)]
    assert report.ratios(r)["D2/D same window"] == 1.5


def test_profile_without_py_spy_is_refused_before_anything_starts(monkeypatch, tmp_path):
    perf = load_bench("perf")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(SystemExit) as stopped:
        perf.parse_args(["--profile-s", "10"])
    assert stopped.value.code == 2
    assert perf.parse_args(["--events", "10"]).profile_s == 0


def test_each_expected_decision_names_its_cause():
    latency = load_bench("perf_latency")
    t0 = 1_767_225_600_000
    inputs = [("friend-adds", {"event_id": f"fa{i}", "ts": t0 + i * 1000, "account_id": "m",
                               "friend_id": f"f{i}"}) for i in range(31)]
    expected = latency.expected_decisions(inputs)
    assert expected and {cause for *_, cause in expected} == {"friend-adds/friend_add_burst"}
    summary = latency.by_cause([("a/x", 5.0), ("b/y", 1.0), ("b/y", 3.0)])
    assert list(summary) == ["b/y", "a/x"] and summary["b/y"]["samples"] == 2


def test_a_later_run_of_the_same_day_does_not_overwrite_the_earlier_json(tmp_path):
    import time

    morning = time.strptime("2026-12-07 06:13", "%Y-%m-%d %H:%M")
    first = report.results_path(tmp_path, morning)
    assert first.name == "perf-2026-12-07.json"
    first.write_text("{}")
    second = report.results_path(tmp_path, morning)
    assert second.name == "perf-2026-12-07-0613.json"
    second.write_text("{}")
    assert report.results_path(tmp_path, morning).name == "perf-2026-12-07-0613-2.json"


def test_the_latency_phase_says_where_records_queued_and_which_topics_came_late():
    r = result(D=1)
    r["latency"] = [{"rate": 2000, "seconds": 20, "p50_ms": 300.0, "p99_ms": 600.0,
                     "kept_up": True, "samples": 3, "out_of_order": 1.0,
                     "out_of_order_by_topic": {"room-creations": 1.0}, "align_timeouts": 0.0,
                     "record_wait_ms": {"account <- inputs": 95.0, "device <- device-inbox": 29.0}}]
    text = report.format_table(r)
    assert "inputs applied out of event-time order: 1 (room-creations 1)" in text
    assert "account <- inputs 95 ms, device <- device-inbox 29 ms" in text
