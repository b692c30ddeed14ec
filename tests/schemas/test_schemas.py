"""The published schemas (SPEC "Topics", "Decision format"; docs/CONTRACTS.md) are well formed,
their examples hold, the rules they promise reject what they should, and the AsyncAPI document
describes exactly these topics."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
INPUT_TOPICS = ("friend-adds", "room-creations", "message-reports", "device-signals",
                "moderation-commands")
OUTPUT_TOPICS = ("account-decisions", "dead-letters")
TOPICS = INPUT_TOPICS + OUTPUT_TOPICS
KEY_FIELD = {"friend-adds": "account_id", "room-creations": "account_id",
             "message-reports": "reported_id", "device-signals": "account_id",
             "moderation-commands": "account_id", "account-decisions": "account_id"}


def load(topic: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{topic}.schema.json").read_text(encoding="utf-8"))


def validator(topic: str) -> Draft202012Validator:
    return Draft202012Validator(load(topic))


def test_there_is_one_schema_file_per_topic_and_nothing_else():
    files = sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json"))
    assert files == sorted(f"{t}.schema.json" for t in TOPICS)


@pytest.mark.parametrize("topic", TOPICS)
def test_schema_is_a_valid_draft_2020_12_schema(topic):
    schema = load(topic)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith(f"/{topic}.schema.json")
    assert schema["title"] and schema["description"]
    assert 1 <= len(schema["examples"]) <= 2


@pytest.mark.parametrize("topic", TOPICS)
def test_every_example_validates(topic):
    check = validator(topic)
    for example in load(topic)["examples"]:
        assert list(check.iter_errors(example)) == []


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_input_schemas_allow_unknown_fields_and_state_the_size_limit(topic):
    schema = load(topic)
    assert schema["additionalProperties"] is True
    assert "65536 bytes" in schema["description"]
    assert "null" in schema["description"]
    example = dict(schema["examples"][0], x_producer_trace="abc", x_nested={"a": [1]})
    assert validator(topic).is_valid(example)


@pytest.mark.parametrize("topic", INPUT_TOPICS)
def test_optional_input_fields_may_be_null(topic):
    schema = load(topic)
    optional = set(schema["properties"]) - set(schema["required"])
    assert optional
    example = dict(schema["examples"][0], **dict.fromkeys(optional))
    if topic == "moderation-commands":
        example["action"] = "lift"  # no conditional requirement on this action
    assert validator(topic).is_valid(example)


def test_decision_examples_have_decision_id_made_of_account_id_and_seq():
    for example in load("account-decisions")["examples"]:
        assert example["decision_id"] == f"{example['account_id']}:{example['seq']}"


def test_decision_schema_lists_spec_fields_in_spec_key_order():
    schema = load("account-decisions")
    assert schema["required"] == [
        "decision_id", "account_id", "seq", "type", "at", "scopes", "triggers", "level",
        "lift_at", "reason", "actor", "evidence", "policy_version",
    ]
    assert list(schema["properties"]) == [*schema["required"], "appeal_allowed_at"]
    assert schema["additionalProperties"] is False


DROP = object()


def with_(topic: str, **changes: Any) -> dict[str, Any]:
    """The topic's first example with fields replaced; a value of DROP removes the field."""
    value = copy.deepcopy(load(topic)["examples"][0])
    for field, new in changes.items():
        if new is DROP:
            value.pop(field, None)
        else:
            value[field] = new
    return value


LONG_ID = "x" * 129
MAX_TS = 253402300799999

INVALID = [
    # friend-adds
    ("friend-adds", "missing friend_id", dict(friend_id=DROP)),
    ("friend-adds", "missing event_id", dict(event_id=DROP)),
    ("friend-adds", "required field null", dict(account_id=None)),
    ("friend-adds", "negative ts", dict(ts=-1)),
    ("friend-adds", "ts after year 9999", dict(ts=MAX_TS + 1)),
    ("friend-adds", "ts as string", dict(ts="1767225600000")),
    ("friend-adds", "fractional ts", dict(ts=1767225600000.5)),
    ("friend-adds", "129-char account_id", dict(account_id=LONG_ID)),
    ("friend-adds", "129-char event_id", dict(event_id=LONG_ID)),
    ("friend-adds", "empty friend_id", dict(friend_id="")),
    ("friend-adds", "empty optional device_id", dict(device_id="")),
    ("friend-adds", "129-char device_id", dict(device_id=LONG_ID)),
    ("friend-adds", "numeric id", dict(friend_id=977)),
    # room-creations
    ("room-creations", "missing room_type", dict(room_type=DROP)),
    ("room-creations", "unknown room_type", dict(room_type="private")),
    ("room-creations", "room_type in wrong case", dict(room_type="OPEN")),
    ("room-creations", "negative ts", dict(ts=-1)),
    ("room-creations", "129-char room_id", dict(room_id=LONG_ID)),
    # message-reports
    ("message-reports", "missing reported_id", dict(reported_id=DROP)),
    ("message-reports", "unknown reason", dict(reason="rude")),
    ("message-reports", "unknown target", dict(target="comment")),
    ("message-reports", "reason null", dict(reason=None)),
    ("message-reports", "129-char reporter_id", dict(reporter_id=LONG_ID)),
    ("message-reports", "empty message_id", dict(message_id="")),
    ("message-reports", "negative ts", dict(ts=-1)),
    # device-signals
    ("device-signals", "missing device_id", dict(device_id=DROP)),
    ("device-signals", "emulator as 1", dict(emulator=1)),
    ("device-signals", "carrier_verified as 0", dict(carrier_verified=0)),
    ("device-signals", "virtual_number as string", dict(virtual_number="true")),
    ("device-signals", "lower-case phone_country", dict(phone_country="kr")),
    ("device-signals", "alpha-3 phone_country", dict(phone_country="KOR")),
    ("device-signals", "phone_country with newline", dict(phone_country="KR\n")),
    ("device-signals", "65-char ip", dict(ip="1" * 65)),
    ("device-signals", "negative ts", dict(ts=-1)),
    ("device-signals", "129-char device_id", dict(device_id=LONG_ID)),
    # moderation-commands
    ("moderation-commands", "missing command_id", dict(command_id=DROP)),
    ("moderation-commands", "event_id instead of command_id",
     dict(command_id=DROP, event_id="cmd-1")),
    ("moderation-commands", "missing actor", dict(actor=DROP)),
    ("moderation-commands", "empty actor", dict(actor="")),
    ("moderation-commands", "unknown action", dict(action="ban")),
    ("moderation-commands", "restrict without scopes", dict(scopes=DROP)),
    ("moderation-commands", "restrict with null scopes", dict(scopes=None)),
    ("moderation-commands", "empty scopes", dict(scopes=[])),
    ("moderation-commands", "repeated scope", dict(scopes=["report", "report"])),
    ("moderation-commands", "unknown scope", dict(scopes=["send_message"])),
    ("moderation-commands", "six scopes",
     dict(scopes=["add_friend", "create_room", "join_open_chat", "send_open_chat_message",
                  "report", "report"])),
    ("moderation-commands", "zero duration", dict(duration_ms=0)),
    ("moderation-commands", "duration as string", dict(duration_ms="7d")),
    ("moderation-commands", "1001-char note", dict(note="n" * 1001)),
    ("moderation-commands", "appeal_decided without granted", dict(action="appeal_decided")),
    ("moderation-commands", "appeal_decided with null granted",
     dict(action="appeal_decided", granted=None)),
    ("moderation-commands", "granted as 1", dict(action="appeal_decided", granted=1)),
    ("moderation-commands", "negative ts", dict(ts=-1)),
    # account-decisions
    ("account-decisions", "missing policy_version", dict(policy_version=DROP)),
    ("account-decisions", "missing lift_at (null is required, not absent)", dict(lift_at=DROP)),
    ("account-decisions", "unknown field", dict(score=0.9)),
    ("account-decisions", "unknown type", dict(type="banned")),
    ("account-decisions", "unknown trigger", dict(triggers=["vpn"])),
    ("account-decisions", "unknown reason", dict(reason="expired")),
    ("account-decisions", "seq 0", dict(seq=0, decision_id="acct-42:0")),
    ("account-decisions", "decision_id without seq", dict(decision_id="acct-42")),
    ("account-decisions", "negative at", dict(at=-1)),
    ("account-decisions", "negative level", dict(level=-1)),
    ("account-decisions", "repeated scope", dict(scopes=["add_friend", "add_friend"])),
    ("account-decisions", "evidence value not an object", dict(evidence={"friend_add_burst": 31})),
    ("account-decisions", "cooldown without appeal_allowed_at",
     dict(type="appeal_rejected", reason="cooldown")),
    ("account-decisions", "lifted but scopes left",
     dict(type="lifted", reason="auto_quiet", lift_at=None)),
    # dead-letters
    ("dead-letters", "missing error", dict(error=DROP)),
    ("dead-letters", "unknown error code", dict(error="bad_thing")),
    ("dead-letters", "unknown value_encoding", dict(value_encoding="latin-1")),
    ("dead-letters", "negative offset", dict(offset=-1)),
    ("dead-letters", "unknown field", dict(trace="...")),
]


@pytest.mark.parametrize(("topic", "why", "changes"), INVALID,
                         ids=[f"{t}: {w}" for t, w, _ in INVALID])
def test_schema_rejects(topic, why, changes):
    instance = with_(topic, **changes)
    assert not validator(topic).is_valid(instance), why


VALID_EDGES = [
    ("friend-adds", "ts 0", dict(ts=0)),
    ("friend-adds", "last ms of year 9999", dict(ts=MAX_TS)),
    ("friend-adds", "128-char ids", dict(event_id="e" * 128, account_id="a" * 128)),
    ("friend-adds", "non-ASCII ids count characters not bytes", dict(friend_id="친" * 128)),
    ("device-signals", "64-char ip, empty allowed", dict(ip="1" * 64)),
    ("device-signals", "empty ip", dict(ip="")),
    ("moderation-commands", "all five scopes",
     dict(scopes=["add_friend", "create_room", "join_open_chat", "send_open_chat_message",
                  "report"])),
    ("moderation-commands", "restrict without duration is indefinite", dict(duration_ms=DROP)),
    ("moderation-commands", "1000-char note", dict(note="n" * 1000)),
    ("moderation-commands", "granted on other actions is ignored", dict(granted=False)),
    ("moderation-commands", "appeal_filed needs neither granted nor scopes",
     dict(action="appeal_filed", scopes=DROP, duration_ms=DROP)),
    ("account-decisions", "account ids may contain colons",
     dict(account_id="tenant:7", decision_id="tenant:7:7")),
    ("dead-letters", "no partition/offset outside Kafka", dict(partition=None, offset=None)),
]


@pytest.mark.parametrize(("topic", "why", "changes"), VALID_EDGES,
                         ids=[f"{t}: {w}" for t, w, _ in VALID_EDGES])
def test_schema_accepts(topic, why, changes):
    instance = with_(topic, **changes)
    assert list(validator(topic).iter_errors(instance)) == [], why


# --- AsyncAPI ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="pyyaml is needed to read schemas/asyncapi.yaml")
    return yaml.safe_load((SCHEMA_DIR / "asyncapi.yaml").read_text(encoding="utf-8"))


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def message_of(doc: dict[str, Any], channel: dict[str, Any]) -> dict[str, Any]:
    (message,) = channel["messages"].values()
    return resolve(doc, message["$ref"]) if "$ref" in message else message


def test_asyncapi_is_version_3_with_the_local_kafka_server(asyncapi):
    assert asyncapi["asyncapi"] == "3.0.0"
    assert {s["host"]: s["protocol"] for s in asyncapi["servers"].values()} == {
        "localhost:9092": "kafka"}


def test_asyncapi_channels_are_exactly_the_schema_topics(asyncapi):
    addresses = sorted(c["address"] for c in asyncapi["channels"].values())
    assert addresses == sorted(TOPICS)


def test_asyncapi_payloads_reference_their_topic_schema_as_draft_2020_12(asyncapi):
    for channel in asyncapi["channels"].values():
        payload = message_of(asyncapi, channel)["payload"]
        assert payload["schemaFormat"] == "application/schema+json;version=draft-2020-12"
        assert payload["schema"] == {"$ref": f"./{channel['address']}.schema.json"}
        assert (SCHEMA_DIR / payload["schema"]["$ref"]).is_file()


def test_asyncapi_kafka_keys_are_the_spec_key_fields(asyncapi):
    for channel in asyncapi["channels"].values():
        key = message_of(asyncapi, channel)["bindings"]["kafka"]["key"]
        expected = KEY_FIELD.get(channel["address"])
        assert key.get("x-warden-key-field") == expected, channel["address"]


def test_asyncapi_message_examples_validate_against_the_topic_schema(asyncapi):
    for channel in asyncapi["channels"].values():
        check = validator(channel["address"])
        examples = message_of(asyncapi, channel)["examples"]
        assert examples
        for example in examples:
            assert list(check.iter_errors(example["payload"])) == []


def test_asyncapi_operations_receive_inputs_and_send_outputs(asyncapi):
    received, sent = set(), set()
    for operation in asyncapi["operations"].values():
        channel = resolve(asyncapi, operation["channel"]["$ref"])
        for message in operation["messages"]:
            assert message["$ref"].startswith(operation["channel"]["$ref"] + "/messages/")
            resolve(asyncapi, message["$ref"])
        {"receive": received, "send": sent}[operation["action"]].add(channel["address"])
    assert set(INPUT_TOPICS) <= received
    assert set(OUTPUT_TOPICS) <= sent
    assert "dead-letters" not in received


def test_every_internal_asyncapi_reference_resolves(asyncapi):
    def refs(node: Any):
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(asyncapi):
        if ref.startswith("#/"):
            resolve(asyncapi, ref)
        else:
            assert (SCHEMA_DIR / ref).is_file(), ref
