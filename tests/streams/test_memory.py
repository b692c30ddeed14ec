"""Freed memory goes back to the system after a burst, not on every tick."""

from __future__ import annotations

from streams.memory import HeapTrim


def trimmer(every_s: float = 2.0) -> tuple[HeapTrim, list[int]]:
    calls: list[int] = []
    return HeapTrim(every_s=every_s, trim=lambda pad: calls.append(pad) or 1), calls


def test_an_idle_worker_is_never_trimmed():
    trim, calls = trimmer()
    assert not trim(now=10.0, work_done=0)
    assert not trim(now=20.0, work_done=0)
    assert calls == []


def test_work_done_is_followed_by_one_trim_and_then_no_more_while_idle():
    trim, calls = trimmer()
    assert trim(now=10.0, work_done=5)
    assert not trim(now=30.0, work_done=5)
    assert calls == [0]


def test_trims_during_a_long_burst_are_at_least_every_s_apart():
    trim, calls = trimmer(every_s=2.0)
    trimmed_at = [t / 2 for t in range(1, 11) if trim(now=t / 2, work_done=t)]  # batch / 0.5 s
    assert trimmed_at == [0.5, 2.5, 4.5]
    assert trim(now=6.5, work_done=11)  # the burst ended: the last trim follows it
    assert len(calls) == 4


def test_without_a_c_library_trim_nothing_is_attempted():
    trim = HeapTrim(trim=None)
    assert not trim(now=1.0, work_done=1)
