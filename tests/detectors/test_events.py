"""detectors.events: the decoder is total and rejects with machine-readable codes."""

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.events import (
    CHECKED_DECODERS,
    DECODERS,
    MAX_MESSAGE_BYTES,
    MAX_TS_MS,
    TOPICS,
    FriendAdded,
    InvalidInput,
    ModerationCommanded,
    Rejected,
    decode,
    key_of,
)

GOOD = {
    "friend-adds": {"event_id": "e1", "ts": 1, "account_id": "a", "friend_id": "b"},
    "room-creations": {"event_id": "e1", "ts": 1, "account_id": "a", "room_id": "r", "room_type": "open"},
    "message-reports": {"event_id": "e1", "ts": 1, "reporter_id": "x", "reported_id": "a",
                        "target": "user", "reason": "spam"},
    "device-signals": {"event_id": "e1", "ts": 1, "account_id": "a", "device_id": "d",
                       "emulator": False, "phone_country": "KR"},
    "moderation-commands": {"command_id": "c1", "ts": 1, "account_id": "a", "actor": "op",
                            "action": "restrict", "scopes": ["report"], "duration_ms": 5},
}


@pytest.mark.parametrize("topic", TOPICS)
def test_valid_messages_decode_and_extra_fields_are_ignored(topic):
    event = decode(topic, orjson.dumps({**GOOD[topic], "unknown": [1, 2]}))
    assert not isinstance(event, Rejected)
    assert key_of(event) == "a"


@pytest.mark.parametrize(("topic", "raw", "code"), [
    ("friend-adds", b"\xff\xfe", "not_utf8"),
    ("friend-adds", b"{not json", "invalid_json"),
    ("friend-adds", b"[1, 2]", "not_object"),
    ("friend-adds", b'{"event_id": "e", "ts": 1, "account_id": "a"}', "missing_field"),
    ("friend-adds", b'{"event_id": "e", "ts": "1", "account_id": "a", "friend_id": "b"}', "wrong_type"),
    ("friend-adds", b'{"event_id": "e", "ts": true, "account_id": "a", "friend_id": "b"}', "wrong_type"),
    ("friend-adds", b'{"event_id": "e", "ts": -1, "account_id": "a", "friend_id": "b"}', "negative_ts"),
    ("friend-adds", b'{"event_id": "e", "ts": 253402300800000, "account_id": "a", "friend_id": "b"}',
     "ts_out_of_range"),
    ("friend-adds", b'{"event_id": "", "ts": 1, "account_id": "a", "friend_id": "b"}', "empty_id"),
    ("room-creations", b'{"event_id": "e", "ts": 1, "account_id": "a", "room_id": "r", "room_type": "x"}',
     "invalid_enum"),
    ("device-signals", b'{"event_id": "e", "ts": 1, "account_id": "a", "device_id": "d", "emulator": 1}',
     "wrong_type"),
    ("device-signals", b'{"event_id": "e", "ts": 1, "account_id": "a", "device_id": "d", '
                       b'"phone_country": "kr"}', "invalid_value"),
    ("moderation-commands", b'{"command_id": "c", "ts": 1, "account_id": "a", "actor": "o", '
                            b'"action": "restrict"}', "missing_field"),
    ("moderation-commands", b'{"command_id": "c", "ts": 1, "account_id": "a", "actor": "o", '
                            b'"action": "appeal_decided"}', "missing_field"),
    ("moderation-commands", b'{"command_id": "c", "ts": 1, "account_id": "a", "actor": "o", '
                            b'"action": "restrict", "scopes": ["fly"]}', "invalid_enum"),
    ("moderation-commands", b'{"command_id": "c", "ts": 1, "account_id": "a", "actor": "o", '
                            b'"action": "restrict", "scopes": ["report"], "duration_ms": 0}',
     "invalid_value"),
    ("nope", b"{}", "unknown_topic"),
])
def test_malformed_messages_are_rejected_with_a_code(topic, raw, code):
    rejected = decode(topic, raw)
    assert isinstance(rejected, Rejected)
    assert rejected.code == code
    assert rejected.detail


def test_ids_longer_than_128_chars_are_rejected():
    rejected = decode("friend-adds", orjson.dumps({**GOOD["friend-adds"], "account_id": "x" * 129}))
    assert rejected == Rejected("id_too_long", "account_id is 129 chars, max 128")


def test_messages_over_64_kib_are_rejected_before_parsing():
    raw = orjson.dumps({**GOOD["friend-adds"], "pad": "x" * MAX_MESSAGE_BYTES})
    assert decode("friend-adds", raw).code == "too_large"


def test_deeply_nested_json_is_rejected_not_a_crash():
    raw = b'{"a":' * 5000 + b"1" + b"}" * 5000
    assert isinstance(decode("friend-adds", raw), Rejected)


def test_null_optional_fields_mean_absent():
    event = decode("friend-adds", orjson.dumps({**GOOD["friend-adds"], "device_id": None}))
    assert event == FriendAdded("e1", 1, "a", "b", None)


def test_commands_carry_sorted_scopes_and_dedupe_on_command_id():
    event = decode("moderation-commands", orjson.dumps(
        {**GOOD["moderation-commands"], "scopes": ["report", "add_friend"]}))
    assert isinstance(event, ModerationCommanded)
    assert event.scopes == ("add_friend", "report")
    assert event.event_id == "c1"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children,
                                                                        max_size=6),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TOPICS), st.binary(max_size=300))
def test_arbitrary_bytes_decode_to_an_event_or_a_rejection_never_an_exception(topic, raw):
    result = decode(topic, raw)
    assert isinstance(result, Rejected) or key_of(result)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(TOPICS), st.dictionaries(
    st.sampled_from(["event_id", "command_id", "ts", "account_id", "friend_id", "room_id",
                     "room_type", "reporter_id", "reported_id", "target", "reason", "device_id",
                     "emulator", "phone_country", "carrier_verified", "virtual_number", "actor",
                     "action", "granted", "scopes", "duration_ms", "note", "ip"]),
    json_values, max_size=12))
def test_arbitrary_json_objects_decode_to_an_event_or_a_rejection(topic, obj):
    result = decode(topic, orjson.dumps(obj))
    assert isinstance(result, Rejected) or key_of(result)


def _outcome(decoder, obj):
    try:
        return decoder(obj)
    except InvalidInput as invalid:
        return ("invalid", invalid.code, invalid.detail)


_FIELDS = ["event_id", "ts", "account_id", "friend_id", "room_id", "room_type", "device_id",
           "emulator", "phone_country", "carrier_verified", "virtual_number", "ip"]
_DROP = object()
_EDGES = [_DROP, None, True, False, 0, 1, -1, MAX_TS_MS, MAX_TS_MS + 1, 1.0, [], {}, "", "a",
          "x" * 128, "x" * 129, "KR", "kr", "K", "KRX", "K1", "ZZ", "AZ", "[A", "open", "group",
          "spam", "i" * 64, "i" * 65]
_EDGE_VALUES = st.one_of(st.sampled_from(_EDGES), st.text(max_size=3))


def _fast_and_checked(topic, changes):
    obj = {**GOOD[topic], "device_id": "d", "ip": "1.2.3.4", "carrier_verified": True}
    for name, value in changes:
        if value is _DROP:
            obj.pop(name, None)
        else:
            obj[name] = value
    return _outcome(DECODERS[topic], obj), _outcome(CHECKED_DECODERS[topic], obj)


@pytest.mark.parametrize("topic", ["friend-adds", "room-creations", "device-signals"])
def test_fast_decoders_agree_with_the_checked_ones_on_every_single_edge(topic):
    for name in _FIELDS:
        for value in _EDGES:
            fast, checked = _fast_and_checked(topic, [(name, value)])
            assert (fast, type(fast)) == (checked, type(checked)), (name, value)


@settings(max_examples=500)
@given(st.sampled_from(["friend-adds", "room-creations", "device-signals"]),
       st.lists(st.tuples(st.sampled_from(_FIELDS), _EDGE_VALUES), min_size=1, max_size=3))
def test_fast_decoders_accept_and_reject_exactly_as_the_checked_ones(topic, changes):
    fast, checked = _fast_and_checked(topic, changes)
    assert (fast, type(fast)) == (checked, type(checked))
