"""`warden worker`: run the stream processor (checks topics first, then starts Faust)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from streams.logsafe import safe, throttle
from streams.settings import Settings, SettingsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--partitions", type=int, help="override WARDEN_PARTITIONS")
    parser.add_argument("--web-port", type=int, help="override WARDEN_WEB_PORT")
    parser.add_argument("--loglevel", default=None, help="override WARDEN_LOG_LEVEL (info)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "partitions", None):
        overrides["partitions"] = args.partitions
    if getattr(args, "web_port", None) is not None:
        overrides["web_port"] = args.web_port
    if getattr(args, "loglevel", None):
        overrides["log_level"] = args.loglevel
    return Settings.from_env(**overrides)


def run(args: argparse.Namespace) -> int:
    from faust import Worker

    from detectors.config import PolicyError
    from streams.app import Warden
    from streams.preflight import TopologyError, ensure_topics

    try:
        settings = settings_from_args(args)
        asyncio.run(ensure_topics(settings))
        warden = Warden(settings)
    except (SettingsError, PolicyError, TopologyError) as exc:
        print(f"warden worker: {safe(exc, 500)}", file=sys.stderr)
        return 2
    except (OSError, asyncio.TimeoutError) as exc:
        bootstrap = safe(Settings.from_env().kafka_bootstrap, 200)
        print(f"warden worker: cannot reach Kafka at {bootstrap}: {safe(repr(exc), 500)}",
              file=sys.stderr)
        return 2
    logging.getLogger("warden").info("settings: %s", settings.redacted())
    throttle(("aiokafka", "faust.transport"))  # a broker outage: thousands of lines/s
    _install_task_dump()
    worker = Worker(warden.app, loglevel=settings.log_level, quiet=True)
    # Faust's start-up spinner sets the root logger to DEBUG (to spin on every record), so
    # every aiokafka debug call built a log record: ~4% of the worker's time (bench/perf.py)
    worker.spinner = None
    tune_gc()
    worker.execute_from_commandline()
    return 0


GC_THRESHOLDS = (50_000, 50, 100)  # CPython's defaults: (700, 10, 10)


def tune_gc() -> None:
    """Fewer cyclic garbage collections: the worker allocates many short-lived containers
    per event (decoded events, records, messages) and CPython's default young-generation
    threshold (700) ran a collection every few events, each also walking the objects
    that survive start-up. Those are frozen out of collection and the thresholds raised
    (issue #5, bench/perf.py: 60,000 events, 2,496 and 2,617 events/s before, 2,990 and
    2,881 after, back to back). Garbage in cycles lives a little longer; RSS is unchanged
    within noise."""
    import gc

    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _install_task_dump() -> None:
    """`kill -USR1 <pid>` logs every asyncio task's stack: diagnosing a stall without a restart."""
    import signal

    def dump(signum: int, frame: object) -> None:
        import io

        import traceback

        out = io.StringIO()
        out.write("--- main thread, where the signal found it\n")
        traceback.print_stack(frame, limit=20, file=out)  # type: ignore[arg-type]
        try:
            loop = asyncio.get_event_loop()
            for task in asyncio.all_tasks(loop):
                out.write(f"--- {task.get_name()} {task.get_coro()!r}\n")
                task.print_stack(limit=12, file=out)
        except RuntimeError as exc:
            out.write(f"no loop: {exc}\n")
        logging.getLogger("warden").warning("asyncio tasks:\n%s", out.getvalue())

    signal.signal(signal.SIGUSR1, dump)
