"""`warden replay`'s loop inlines `parse_line` and `decode_object` for speed; every line
must still be judged exactly as they judge it."""

from __future__ import annotations

import io

import orjson
import pytest

from detectors.engine import Engine
from detectors.events import MAX_MESSAGE_BYTES, Rejected
from streams.replay import parse_line, replay_lines

LINES = [
    b'{"topic":"friend-adds","value":{"event_id":"e1","ts":5,"account_id":"a","friend_id":"b"}}',
    b'{"topic":"friend-adds","value":{"event_id":"e2","ts":-5,"account_id":"a","friend_id":"b"}}',
    b'{"topic":"friend-adds","value":{"event_id":"e3","ts":"5","account_id":"a","friend_id":"b"}}',
    b'{"topic":"friend-adds","value":{"event_id":"","ts":5,"account_id":"a","friend_id":"b"}}',
    b'{"topic":"room-creations","value":{"event_id":"e4","ts":5,"account_id":"a","room_id":"r",'
    b'"room_type":"closed"}}',
    b'{"topic":"device-signals","value":{"event_id":"e5","ts":5,"account_id":"a","device_id":"d",'
    b'"phone_country":"kr"}}',
    b'{"topic":"device-signals","value":{"event_id":"e6","ts":5,"account_id":"a"}}',
    b'{"topic":"message-reports","value":{"event_id":"e7","ts":5,"reporter_id":"a",'
    b'"reported_id":"b","target":"user","reason":"nonsense"}}',
    b'{"topic":"moderation-commands","value":{"command_id":"c1","ts":5,"account_id":"a",'
    b'"actor":"op","action":"restrict"}}',
    b'{"topic":"friend-adds","value":null}',
    b'{"topic":"friend-adds","value":[1]}',
    b'{"topic":"friend-adds"}',
    b'{"topic":"no-such-topic","value":{}}',
    b'{"topic":["friend-adds"],"value":{}}',
    b'{"value":{}}',
    b"[1, 2]",
    b"not json",
    b'{"topic":"friend-adds","value":{"event_id":"' + b"x" * MAX_MESSAGE_BYTES + b'"}}',
]


# How a line may be padded on disk: the loop parses it as read, parse_line stripped.
PADDINGS = [(b"", b"\n"), (b"", b""), (b"", b"\r\n"), (b"  ", b" \t\n"), (b"", b"\x0c\n"),
            (b"", b" " * 200 + b"\n"), (b"", b" " * (MAX_MESSAGE_BYTES + 200) + b"\n")]


@pytest.mark.parametrize("padding", PADDINGS, ids=range(len(PADDINGS)))
@pytest.mark.parametrize("line", LINES, ids=range(len(LINES)))
def test_each_line_is_accepted_or_dead_lettered_as_parse_line_judges_it(line, padding):
    out, dlq = io.BytesIO(), io.BytesIO()
    stats = replay_lines(iter([padding[0] + line + padding[1]]), Engine(), out, dlq)
    assert stats.lines == 1
    topic, parsed = parse_line(line)
    if isinstance(parsed, Rejected):
        assert orjson.loads(dlq.getvalue()) == {"line": 1, "topic": topic, "error": parsed.code,
                                                "detail": parsed.detail}
        assert stats.accepted == 0
    else:
        assert dlq.getvalue() == b""
        assert stats.accepted == 1


@pytest.mark.parametrize("blank", [b"\n", b"", b"  \t\r\n", b"\x0c\n"])
def test_blank_lines_are_skipped_without_a_dead_letter(blank):
    out, dlq = io.BytesIO(), io.BytesIO()
    stats = replay_lines(iter([blank]), Engine(), out, dlq)
    assert (stats.lines, dlq.getvalue(), out.getvalue()) == (0, b"", b"")
