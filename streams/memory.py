"""Handing memory the worker freed back to the operating system after a burst (issue #5).

glibc's malloc returns freed memory to the system only from the top of its heap. A
drain allocates and frees hundreds of megabytes (decoded events, orjson's 4 KiB output
blocks, fetched batches) while the state it keeps grows in between, so after a burst
the heap stays at its peak: bench/perf.py's idle-memory phase measured 2.9 to 4.5 KB
of RSS per idle account, of which the live state is about 0.5 KB. `malloc_trim(0)`
releases every free page of the heap, wherever it is: 4,091 -> 1,200 B per account.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger("warden")


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


MALLOC_TRIM = _malloc_trim()


class HeapTrim:
    """Trims the heap once work was done since the last trim and `every_s` has passed:
    one trim at most `every_s` after a burst ends, none while the worker is idle."""

    def __init__(self, *, every_s: float = 2.0,
                 trim: Callable[[int], int] | None = MALLOC_TRIM) -> None:
        self.every_s = every_s
        self._trim = trim
        self._last_at: float | None = None
        self._work_at_last = 0

    def __call__(self, now: float, work_done: int) -> bool:
        """`work_done`: a count that grows with the work handled (batches committed)."""
        if self._trim is None or work_done == self._work_at_last:
            return False
        if self._last_at is not None and now - self._last_at < self.every_s:
            return False
        started = time.perf_counter()
        self._trim(0)
        self._last_at, self._work_at_last = now, work_done
        log.debug("heap trimmed in %.1f ms", 1000 * (time.perf_counter() - started))
        return True
