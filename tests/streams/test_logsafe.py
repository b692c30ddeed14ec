"""Text from inputs is escaped and cut before it reaches a log line or a terminal, and a
repeating log message is throttled (streams/logsafe.py)."""

from __future__ import annotations

import logging

import pytest

from streams.logsafe import RepeatThrottle, safe
from streams.settings import Settings


@pytest.mark.parametrize(("text", "shown"), [
    ("acct-42", "acct-42"),
    ("caf\u00e9 \U0001f600", "caf\u00e9 \U0001f600"),              # printable: kept as is
    ("a\x00b", "a\\x00b"),                                          # NUL
    ("forged\n[ERROR] line\r", "forged\\x0a[ERROR] line\\x0d"),     # no forged log lines
    ("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),      # no terminal control
    ("\u202eevil", "\\u202eevil"),                                  # bidi override shown
    ("zero\u200bwidth", "zero\\u200bwidth"),
    ("lone \ud800", "lone \\ud800"),                                # lone surrogate
    ("back\\slash", "back\\\\slash"),                               # escapes stay unambiguous
    ("\U000e0041tag", "\\U000e0041tag"),                            # invisible tag character
    (b"raw\xff\xfe", "raw\\xff\\xfe"),                              # bytes: not UTF-8 as \xNN
    (b"ok \xe2\x82\xac", "ok \u20ac"),
    (ValueError("bad\nvalue"), "bad\\x0avalue"),                    # anything with a str()
])
def test_safe_escapes_everything_that_is_not_printable(text, shown):
    assert safe(text) == shown


def test_safe_cuts_long_text_and_says_how_much_is_left_out():
    assert safe("x" * 200) == "x" * 64 + "…(+136)"
    assert safe("x" * 64) == "x" * 64
    assert safe("abc", limit=2) == "ab…(+1)"


def test_safe_never_cuts_inside_an_escape():
    shown = safe("ab" + "\x00" * 10, limit=7)  # "ab" + "\x00" (4 chars) fits, the next does not
    assert shown == "ab\\x00…(+36)"


def test_repeat_throttle_passes_the_first_then_one_per_interval_with_a_count():
    now = [0.0]
    throttle = RepeatThrottle(every_s=5.0, clock=lambda: now[0])

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("aiokafka.client", logging.ERROR, __file__, 1, msg, args, None)

    assert throttle.filter(record("Unable to update metadata from %s", [1]))
    passed = 0
    for _ in range(1000):
        now[0] += 0.001
        passed += throttle.filter(record("Unable to update metadata from %s", [1]))
    assert passed == 0
    assert throttle.filter(record("another message"))  # other templates are not held back
    now[0] = 5.5
    again = record("Unable to update metadata from %s", [1])
    assert throttle.filter(again)
    assert again.getMessage() == \
        "Unable to update metadata from [1] [1000 more like this in the last 6 s]"


def test_secrets_are_masked_in_the_settings_a_worker_logs():
    env = {"WARDEN_REDIS_URL": "rediss://user:p@ss@redis.example:6380/0?password=q-secret",
           "WARDEN_REDIS_PASSWORD": "r-secret", "WARDEN_OPERATOR_TOKEN": "t-secret",
           "WARDEN_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "WARDEN_KAFKA_SASL_USERNAME": "svc",
           "WARDEN_KAFKA_SASL_PASSWORD": "k-secret"}
    settings = Settings.from_env(env)
    shown = f"{settings.redacted()} {settings!r}"
    for secret in ("p@ss", "q-secret", "r-secret", "t-secret", "k-secret"):
        assert secret not in shown, secret
    assert "redis.example:6380" in shown and "svc" in shown
