"""Text from outside (ids, messages, error text) made safe to log, and log floods bounded.

`safe()` escapes whatever is not printable (control characters such as NUL, CR/LF and ESC,
bidirectional overrides such as U+202E, lone surrogates, other format characters) and cuts the
text to a length, so an input can neither forge log lines, drive a terminal, hide what it is
nor flood a log. Backslashes are escaped too, so the escaped form is unambiguous.

`RepeatThrottle` lets the first record of each (logger, level, message template) through and
then at most one per `every_s` seconds, noting how many were held back: while a broker is down
the Kafka client logs the same failed metadata refresh thousands of times a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

DEFAULT_LIMIT = 64


def _escape(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe(text: object, limit: int = DEFAULT_LIMIT) -> str:
    """`text` (str, bytes or anything with a str()) escaped and cut to about `limit` chars.

    Bytes that are not UTF-8 show as \\xNN; a cut text ends with "…(+N)", N the escaped characters
    left out, so the true length stays visible.
    """
    if isinstance(text, bytes):  # undecodable bytes become U+DC80..U+DCFF, shown as \\xNN
        tokens = [f"\\x{ord(c) - 0xDC00:02x}" if "\udc80" <= c <= "\udcff" else _escape(c)
                  for c in text.decode("utf-8", "surrogateescape")]
    else:
        tokens = [_escape(c) for c in str(text)]
    total = sum(map(len, tokens))
    if total <= limit:
        return "".join(tokens)
    kept, size = [], 0
    for token in tokens:  # cut between escapes, never inside one
        if size + len(token) > limit:
            break
        kept.append(token)
        size += len(token)
    return f"{''.join(kept)}…(+{total - size})"


class RepeatThrottle(logging.Filter):
    """Passes the first record per (logger, level, template), then one per `every_s` seconds."""

    def __init__(self, every_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self.clock = clock
        self._last: dict[tuple[str, int, str], float] = {}
        self._held: dict[tuple[str, int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._held[key] = self._held.get(key, 0) + 1
            return False
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} [{held} more like this in the last {now - last:.0f} s]"
        if len(self._last) > 10_000:  # templates, not values: only a bug could get here
            self._last.clear()
        return True


def throttle(prefixes: Iterable[str] = ("aiokafka",), every_s: float = 5.0) -> RepeatThrottle:
    """Install one RepeatThrottle on every logger already created under `prefixes` (logger
    filters do not reach child loggers, so each module's logger gets it)."""
    flt = RepeatThrottle(every_s)
    prefixes = tuple(prefixes)
    names = [name for name in logging.root.manager.loggerDict
             if any(name == p or name.startswith(p + ".") for p in prefixes)]
    for name in names:
        logging.getLogger(name).addFilter(flt)
    return flt
