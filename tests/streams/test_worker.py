"""streams/worker.py: the worker process's own tuning."""

from __future__ import annotations

import gc

from streams.worker import GC_THRESHOLDS, tune_gc


def test_the_worker_collects_garbage_less_often_and_never_walks_its_start_up_objects():
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
