"""Input events as frozen values, and the total decoder that produces them.

`decode(topic, raw)` never raises on input: it returns an `Event` or a
`Rejected(code, detail)` that the edge routes to `dead-letters`
(SPEC "Topics"; codes listed in docs/CONTRACTS.md). The JSON Schemas in
`schemas/` state the same contract; tests/schemas checks they agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from string import ascii_uppercase
from typing import Any

import orjson

from detectors.values import constructor, fast_init

MAX_MESSAGE_BYTES = 65536
MAX_ID_CHARS = 128
MAX_NOTE_CHARS = 1000
MAX_IP_CHARS = 64
MAX_TS_MS = 253402300799999  # 9999-12-31T23:59:59.999Z

SCOPES = ("add_friend", "create_room", "join_open_chat", "send_open_chat_message", "report")
ROOM_TYPES = ("group", "open")
REPORT_TARGETS = ("message", "user", "profile", "room")
REPORT_REASONS = (
    "spam", "gambling", "obscene", "harassment", "privacy", "impersonation", "rights", "other",
)
ACTIONS = ("appeal_filed", "appeal_decided", "mark_false_positive", "restrict", "lift")


@fast_init
@dataclass(frozen=True, slots=True)
class FriendAdded:
    event_id: str
    ts: int
    account_id: str
    friend_id: str
    device_id: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class RoomCreated:
    event_id: str
    ts: int
    account_id: str
    room_id: str
    room_type: str
    device_id: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class MessageReported:
    event_id: str
    ts: int
    reporter_id: str
    reported_id: str
    target: str
    reason: str
    room_id: str | None = None
    message_id: str | None = None

    @property
    def account_id(self) -> str:
        """Reports are keyed by the account they are about."""
        return self.reported_id


@fast_init
@dataclass(frozen=True, slots=True)
class DeviceSignalled:
    event_id: str
    ts: int
    account_id: str
    device_id: str
    emulator: bool | None = None
    phone_country: str | None = None
    carrier_verified: bool | None = None
    virtual_number: bool | None = None
    ip: str | None = None


@fast_init
@dataclass(frozen=True, slots=True)
class ModerationCommanded:
    command_id: str
    ts: int
    account_id: str
    actor: str
    action: str
    granted: bool | None = None
    scopes: tuple[str, ...] | None = None
    duration_ms: int | None = None
    note: str | None = None

    @property
    def event_id(self) -> str:
        """Commands de-duplicate on `command_id` exactly as events do on `event_id`."""
        return self.command_id


Event = FriendAdded | RoomCreated | MessageReported | DeviceSignalled | ModerationCommanded


@fast_init
@dataclass(frozen=True, slots=True)
class Rejected:
    """Why an input could not be accepted; `code` is machine-readable."""

    code: str
    detail: str


class InvalidInput(Exception):
    """Raised by the `DECODERS` functions; `decode` / `decode_object` turn it into
    `Rejected`, and a caller of a decoder itself (the replay loop) must too."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail


def _id(obj: dict[str, Any], field: str, *, required: bool = True) -> str | None:
    value = obj.get(field)
    if value is None:
        if required:
            raise InvalidInput("missing_field", f"{field} is required")
        return None
    if type(value) is not str:
        raise InvalidInput("wrong_type", f"{field} must be a string, got {_json_type(value)}")
    if not value:
        raise InvalidInput("empty_id", f"{field} must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise InvalidInput("id_too_long", f"{field} is {len(value)} chars, max {MAX_ID_CHARS}")
    return value


def _ts(obj: dict[str, Any]) -> int:
    value = obj.get("ts")
    if value is None:
        raise InvalidInput("missing_field", "ts is required")
    if type(value) is not int:
        raise InvalidInput("wrong_type", f"ts must be an integer (ms), got {_json_type(value)}")
    if value < 0:
        raise InvalidInput("negative_ts", f"ts must be >= 0, got {value}")
    if value > MAX_TS_MS:
        raise InvalidInput("ts_out_of_range", f"ts {value} is after year 9999")
    return value


def _enum(obj: dict[str, Any], field: str, allowed: tuple[str, ...]) -> str:
    value = obj.get(field)
    if value is None:
        raise InvalidInput("missing_field", f"{field} is required")
    if type(value) is not str:
        raise InvalidInput("wrong_type", f"{field} must be a string, got {_json_type(value)}")
    if value not in allowed:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidInput("invalid_enum", f"{field}={shown!r} is not one of {', '.join(allowed)}")
    return value


def _bool(obj: dict[str, Any], field: str) -> bool | None:
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is not bool:
        raise InvalidInput("wrong_type", f"{field} must be a boolean, got {_json_type(value)}")
    return value


def _text(obj: dict[str, Any], field: str, max_chars: int) -> str | None:
    value = obj.get(field)
    if value is None:
        return None
    if type(value) is not str:
        raise InvalidInput("wrong_type", f"{field} must be a string, got {_json_type(value)}")
    if len(value) > max_chars:
        raise InvalidInput("text_too_long", f"{field} is {len(value)} chars, max {max_chars}")
    return value


def _json_type(value: object) -> str:
    return {
        bool: "boolean", int: "integer", float: "number", str: "string",
        list: "array", dict: "object", type(None): "null",
    }.get(type(value), type(value).__name__)


def _friend_added(o: dict[str, Any]) -> FriendAdded:
    event = FriendAdded(
        _id(o, "event_id"), _ts(o), _id(o, "account_id"), _id(o, "friend_id"),  # type: ignore[arg-type]
        _id(o, "device_id", required=False),
    )
    return event


def _room_created(o: dict[str, Any]) -> RoomCreated:
    return RoomCreated(
        _id(o, "event_id"), _ts(o), _id(o, "account_id"), _id(o, "room_id"),  # type: ignore[arg-type]
        _enum(o, "room_type", ROOM_TYPES), _id(o, "device_id", required=False),
    )


def _message_reported(o: dict[str, Any]) -> MessageReported:
    return MessageReported(
        _id(o, "event_id"), _ts(o), _id(o, "reporter_id"), _id(o, "reported_id"),  # type: ignore[arg-type]
        _enum(o, "target", REPORT_TARGETS), _enum(o, "reason", REPORT_REASONS),
        _id(o, "room_id", required=False), _id(o, "message_id", required=False),
    )


def _device_signalled(o: dict[str, Any]) -> DeviceSignalled:
    country = o.get("phone_country")
    if country is not None:
        if type(country) is not str:
            raise InvalidInput("wrong_type", f"phone_country must be a string, got {_json_type(country)}")
        if len(country) != 2 or not ("A" <= country[0] <= "Z" and "A" <= country[1] <= "Z"):
            raise InvalidInput("invalid_value", "phone_country must be ISO 3166 alpha-2, e.g. KR")
    return DeviceSignalled(
        _id(o, "event_id"), _ts(o), _id(o, "account_id"), _id(o, "device_id"),  # type: ignore[arg-type]
        _bool(o, "emulator"), country, _bool(o, "carrier_verified"),
        _bool(o, "virtual_number"), _text(o, "ip", MAX_IP_CHARS),
    )


def _scopes(o: dict[str, Any]) -> tuple[str, ...] | None:
    value = o.get("scopes")
    if value is None:
        return None
    if type(value) is not list:
        raise InvalidInput("wrong_type", f"scopes must be an array, got {_json_type(value)}")
    if len(value) > len(SCOPES):
        raise InvalidInput("list_too_long", f"scopes has {len(value)} items, max {len(SCOPES)}")
    if not value:
        raise InvalidInput("invalid_value", "scopes must not be empty")
    for scope in value:
        if type(scope) is not str or scope not in SCOPES:
            raise InvalidInput("invalid_enum", f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if len(set(value)) != len(value):
        raise InvalidInput("invalid_value", "scopes must not repeat")
    return tuple(sorted(value))


def _moderation_commanded(o: dict[str, Any]) -> ModerationCommanded:
    command_id, ts, account_id = _id(o, "command_id"), _ts(o), _id(o, "account_id")
    actor = _id(o, "actor")
    action = _enum(o, "action", ACTIONS)
    granted = _bool(o, "granted")
    scopes = _scopes(o)
    duration = o.get("duration_ms")
    if duration is not None:
        if type(duration) is not int:
            raise InvalidInput("wrong_type", f"duration_ms must be an integer, got {_json_type(duration)}")
        if duration < 1:
            raise InvalidInput("invalid_value", "duration_ms must be >= 1")
    if action == "appeal_decided" and granted is None:
        raise InvalidInput("missing_field", "granted is required for appeal_decided")
    if action == "restrict" and scopes is None:
        raise InvalidInput("missing_field", "scopes is required for restrict")
    return ModerationCommanded(
        command_id, ts, account_id, actor, action, granted, scopes, duration,  # type: ignore[arg-type]
        _text(o, "note", MAX_NOTE_CHARS),
    )


# Fast paths for the three device-use topics (most inputs): the checks above, inlined and
# accepting only what they accept; anything else goes to the checked decoder, which then
# accepts or names the error exactly as before. tests/detectors/test_events.py compares both.
_make_friend_added = constructor(FriendAdded)
_make_room_created = constructor(RoomCreated)
_make_device_signalled = constructor(DeviceSignalled)
_OPTIONAL_BOOL = frozenset({bool, type(None)})
_COUNTRIES = frozenset(a + b for a in ascii_uppercase for b in ascii_uppercase)


def _fast_friend_added(o: dict[str, Any]) -> FriendAdded:
    get = o.get
    event_id, ts, account_id = get("event_id"), get("ts"), get("account_id")
    friend_id, device_id = get("friend_id"), get("device_id")
    if (type(event_id) is str and type(ts) is int and type(account_id) is str
            and type(friend_id) is str and 0 <= ts <= MAX_TS_MS
            and 0 < len(event_id) <= MAX_ID_CHARS and 0 < len(account_id) <= MAX_ID_CHARS
            and 0 < len(friend_id) <= MAX_ID_CHARS
            and (device_id is None
                 or (type(device_id) is str and 0 < len(device_id) <= MAX_ID_CHARS))):
        return _make_friend_added(event_id, ts, account_id, friend_id, device_id)
    return _friend_added(o)


def _fast_room_created(o: dict[str, Any]) -> RoomCreated:
    get = o.get
    event_id, ts, account_id = get("event_id"), get("ts"), get("account_id")
    room_id, room_type, device_id = get("room_id"), get("room_type"), get("device_id")
    if (type(event_id) is str and type(ts) is int and type(account_id) is str
            and type(room_id) is str and type(room_type) is str and 0 <= ts <= MAX_TS_MS
            and 0 < len(event_id) <= MAX_ID_CHARS and 0 < len(account_id) <= MAX_ID_CHARS
            and 0 < len(room_id) <= MAX_ID_CHARS and room_type in ROOM_TYPES
            and (device_id is None
                 or (type(device_id) is str and 0 < len(device_id) <= MAX_ID_CHARS))):
        return _make_room_created(event_id, ts, account_id, room_id, room_type, device_id)
    return _room_created(o)


def _fast_device_signalled(o: dict[str, Any]) -> DeviceSignalled:
    get = o.get
    event_id, ts, account_id = get("event_id"), get("ts"), get("account_id")
    device_id = get("device_id")
    emulator, country, carrier = get("emulator"), get("phone_country"), get("carrier_verified")
    virtual, ip = get("virtual_number"), get("ip")
    if (type(event_id) is str and type(ts) is int and type(account_id) is str
            and type(device_id) is str and 0 <= ts <= MAX_TS_MS
            and 0 < len(event_id) <= MAX_ID_CHARS and 0 < len(account_id) <= MAX_ID_CHARS
            and 0 < len(device_id) <= MAX_ID_CHARS
            and type(emulator) in _OPTIONAL_BOOL and type(carrier) in _OPTIONAL_BOOL
            and type(virtual) in _OPTIONAL_BOOL
            and (country is None or (type(country) is str and country in _COUNTRIES))
            and (ip is None or (type(ip) is str and len(ip) <= MAX_IP_CHARS))):
        return _make_device_signalled(event_id, ts, account_id, device_id, emulator, country,
                                      carrier, virtual, ip)
    return _device_signalled(o)


CHECKED_DECODERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    "friend-adds": _friend_added,
    "room-creations": _room_created,
    "message-reports": _message_reported,
    "device-signals": _device_signalled,
    "moderation-commands": _moderation_commanded,
}
DECODERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    **CHECKED_DECODERS,
    "friend-adds": _fast_friend_added,
    "room-creations": _fast_room_created,
    "device-signals": _fast_device_signalled,
}
TOPICS = tuple(DECODERS)
INPUT_TOPICS_SET = frozenset(TOPICS)


def decode(topic: str, raw: bytes | str) -> Event | Rejected:
    """Parse and validate one message of `topic`; total over arbitrary bytes."""
    decoder = DECODERS.get(topic)
    if decoder is None:
        return Rejected("unknown_topic", f"{topic!r} is not one of {', '.join(TOPICS)}")
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    if size > MAX_MESSAGE_BYTES:
        return Rejected("too_large", f"message is {size} bytes, max {MAX_MESSAGE_BYTES}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if isinstance(raw, bytes):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return Rejected("not_utf8", "message is not valid UTF-8")
        return Rejected("invalid_json", f"not JSON: {exc}"[:200])
    return decode_object(topic, obj)


def decode_object(topic: str, obj: object) -> Event | Rejected:
    """Validate an already-parsed JSON value (replay files embed values inline)."""
    decoder = DECODERS.get(topic)
    if decoder is None:
        return Rejected("unknown_topic", f"{topic!r} is not one of {', '.join(TOPICS)}")
    if type(obj) is not dict:
        return Rejected("not_object", f"message must be a JSON object, got {_json_type(obj)}")
    try:
        return decoder(obj)
    except InvalidInput as invalid:
        return Rejected(invalid.code, invalid.detail)


def key_of(event: Event) -> str:
    """The partition key the spec gives each input topic."""
    if isinstance(event, MessageReported):
        return event.reported_id
    return event.account_id
