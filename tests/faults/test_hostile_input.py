"""Hostile input on a real worker (issue #6, item 4): fuzzed bytes, truncated and oversized
payloads, deep nesting, wrong types, unknown enums, out-of-range timestamps, duplicate ids,
unicode edge cases in ids and wrong keys. Every message is accounted for exactly:
- each rejected one is ONE dead letter carrying its own topic/partition/offset and the
  expected error code, and `warden_invalid_events_total{topic,error}` says the same;
- each repeat of an (account, event_id) is ignored, counted in
  `warden_duplicate_events_total{topic}`;
- the rest are events (unicode ids included) whose decisions reach the log and Redis intact;
and the worker stays up and healthy, with no traceback in its log.

Expected codes are written down per case (from detectors/events.py and README "Topics"), not
recomputed by the decoder, except for the seeded fuzz cases: there the pure decoder's verdict
(plus the key check) is the expectation, and the live path must agree message by message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from drain import drained, metric_samples, metrics_text
from harness import TopicReader, running_worker, wait_for
from redis import Redis

from detectors.events import MAX_ID_CHARS, MAX_MESSAGE_BYTES, Rejected, decode, key_of
from projections.client import SyncWardenClient

PARTITIONS = 2
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
ACCEPTED, DUPLICATE = "accepted", "duplicate"
EMOJI = "\U0001f600"


@dataclass(frozen=True)
class Case:
    category: str
    topic: str  # canonical input topic
    key: bytes | None
    value: bytes | None
    expect: str  # a dead-letter code, ACCEPTED or DUPLICATE


class Cases:
    """Builds the hostile corpus; ids and timestamps unique per case unless a case repeats."""

    def __init__(self, uid: str) -> None:
        self.uid = uid
        self.n = 0
        self.items: list[Case] = []

    def fresh(self, what: str = "e") -> str:
        self.n += 1
        return f"{what}-{self.uid}-{self.n}"

    def friend_add(self, **fields: Any) -> dict[str, Any]:
        value = {"event_id": self.fresh(), "ts": T0 + self.n, "account_id": self.fresh("acct"),
                 "friend_id": self.fresh("friend")}
        value.update(fields)
        return value

    def add(self, category: str, topic: str, value: Any, expect: str, *,
            key: bytes | str | None = "auto") -> None:
        raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
        if key == "auto":
            key = None
            if isinstance(value, dict):
                account = value.get("reported_id" if topic == "message-reports" else "account_id")
                key = account.encode("utf-8", "surrogatepass") if isinstance(account, str) else None
        self.items.append(Case(category, topic, key, raw, expect))  # type: ignore[arg-type]


def build_cases(uid: str) -> tuple[list[Case], dict[str, str]]:
    """(cases in send order, {unicode account id: its emulator event_id}) for the checks."""
    c = Cases(uid)
    fa = "friend-adds"

    # --- fuzzed bytes (seeded) -----------------------------------------------------------
    rng = random.Random(20260601)  # fixed: the same corpus every run
    for _ in range(40):  # contain 0xff, which no UTF-8 text does
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))) + b"\xff"
        c.add("fuzzed bytes", rng.choice(FUZZ_TOPICS), junk, "not_utf8", key=b"k")
    for _ in range(40):  # printable, never a JSON value
        junk = "x" + "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randrange(0, 200)))
        c.add("fuzzed bytes", rng.choice(FUZZ_TOPICS), junk.encode(), "invalid_json", key=b"k")
    for _ in range(60):  # a valid event with random bytes flipped: the decoder is the oracle
        value = orjson.dumps(c.friend_add())
        raw = bytearray(value)
        for _ in range(rng.randrange(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        key = orjson.loads(value)["account_id"].encode()
        c.add("fuzzed bytes", fa, bytes(raw), _oracle(fa, key, bytes(raw)), key=key)

    # --- truncated ------------------------------------------------------------------------
    for cut in (1, 2, 10, 30, 50):
        value = orjson.dumps(c.friend_add())
        c.add("truncated", fa, value[:-cut], "invalid_json",
              key=orjson.loads(value)["account_id"].encode())
    cut_utf8 = orjson.dumps(c.friend_add(friend_id=f"f{EMOJI}"))
    c.add("truncated", fa, cut_utf8[:cut_utf8.index(EMOJI.encode()) + 2], "not_utf8", key=b"k")
    c.add("truncated", fa, b"", "invalid_json", key=b"k")
    c.add("truncated", fa, None, "invalid_json", key=b"k")  # a tombstone on an input topic

    # --- size cap -------------------------------------------------------------------------
    for size in (MAX_MESSAGE_BYTES + 1, 200_000, 900_000):
        value = c.friend_add()
        padded = orjson.dumps({**value, "pad": ""})
        value["pad"] = "p" * (size - len(padded))
        c.add("over the size cap", fa, value, "too_large")
    big_binary = b"\xff" * 800_000  # base64 in the dead letter would be over Kafka's 1 MB
    c.add("over the size cap", fa, big_binary, "too_large", key=b"k")
    exact = c.friend_add()
    padded = orjson.dumps(exact)
    c.add("over the size cap", fa, padded[:-1] + b" " * (MAX_MESSAGE_BYTES - len(padded)) + b"}",
          ACCEPTED, key=exact["account_id"].encode())  # exactly at the cap: accepted

    # --- deep nesting -----------------------------------------------------------------------
    c.add("deep nesting", fa, b"[" * 100_000 + b"]" * 100_000, "too_large", key=b"k")
    c.add("deep nesting", fa, b"[" * 20_000 + b"]" * 20_000, "invalid_json", key=b"k")
    deep = c.friend_add()
    c.add("deep nesting", fa, orjson.dumps(deep)[:-1] + b',"x":' + b"{\"a\":" * 2000
          + b"1" + b"}" * 2001, "invalid_json", key=deep["account_id"].encode())
    nested_id = c.friend_add()
    nested_id["event_id"] = _nest(50)
    c.add("deep nesting", fa, nested_id, "wrong_type")

    # --- wrong types and shapes -------------------------------------------------------------
    for value, code in (
        ([1, 2, 3], "not_object"), ("a string", "not_object"), (42, "not_object"),
        (None, "not_object"),
        (c.friend_add(ts="1767225600000"), "wrong_type"), (c.friend_add(ts=1.5), "wrong_type"),
        (c.friend_add(ts=True), "wrong_type"), (c.friend_add(event_id=7), "wrong_type"),
        (c.friend_add(friend_id={"id": "x"}), "wrong_type"),
        (c.friend_add(device_id=["d"]), "wrong_type"),
        ({"ts": T0, "account_id": "a", "friend_id": "b"}, "missing_field"),
        (c.friend_add(friend_id=None), "missing_field"),
        (c.friend_add(event_id=""), "empty_id"),
    ):
        c.add("wrong types", fa, orjson.dumps(value), code,
              key=value.get("account_id", "k").encode() if isinstance(value, dict) else b"k")
    dev = {"event_id": c.fresh(), "ts": T0, "account_id": c.fresh("acct"), "device_id": "d1"}
    c.add("wrong types", "device-signals", {**dev, "emulator": "true"}, "wrong_type")
    c.add("wrong types", "device-signals", {**dev, "event_id": c.fresh(), "phone_country": "kor"},
          "invalid_value")
    c.add("wrong types", "device-signals", {**dev, "event_id": c.fresh(), "ip": "1" * 65},
          "text_too_long")
    cmd = {"command_id": c.fresh("cmd"), "ts": T0, "account_id": c.fresh("acct"), "actor": "op",
           "action": "restrict", "scopes": ["report"]}
    c.add("wrong types", "moderation-commands", {**cmd, "scopes": "report"}, "wrong_type")
    c.add("wrong types", "moderation-commands", {**cmd, "command_id": c.fresh("cmd"),
                                                 "scopes": ["report"] * 6}, "list_too_long")
    c.add("wrong types", "moderation-commands", {**cmd, "command_id": c.fresh("cmd"),
                                                 "duration_ms": 0}, "invalid_value")
    c.add("wrong types", "moderation-commands", {**cmd, "command_id": c.fresh("cmd"),
                                                 "note": "n" * 1001}, "text_too_long")

    # --- unknown enums ------------------------------------------------------------------------
    room = {"event_id": c.fresh(), "ts": T0, "account_id": c.fresh("acct"), "room_id": "r"}
    c.add("unknown enums", "room-creations", {**room, "room_type": "secret"}, "invalid_enum")
    c.add("unknown enums", "room-creations", {**room, "event_id": c.fresh(), "room_type": "OPEN"},
          "invalid_enum")
    report = {"event_id": c.fresh(), "ts": T0, "reporter_id": c.fresh("acct"),
              "reported_id": c.fresh("acct"), "target": "user", "reason": "spam"}
    c.add("unknown enums", "message-reports", {**report, "reason": "meh"}, "invalid_enum")
    c.add("unknown enums", "message-reports",
          {**report, "event_id": c.fresh(), "target": "x" * 500}, "invalid_enum")
    c.add("unknown enums", "moderation-commands", {**cmd, "command_id": c.fresh("cmd"),
                                                   "action": "nuke"}, "invalid_enum")
    c.add("unknown enums", "moderation-commands", {**cmd, "command_id": c.fresh("cmd"),
                                                   "scopes": ["fly"]}, "invalid_enum")

    # --- timestamps -----------------------------------------------------------------------------
    for ts, code in ((-1, "negative_ts"), (-(2**63), "negative_ts"),
                     (253402300800000, "ts_out_of_range"), (2**64 - 1, "ts_out_of_range")):
        c.add("timestamps", fa, c.friend_add(ts=ts), code)
    big = c.friend_add()
    c.add("timestamps", fa, orjson.dumps(big).replace(str(big["ts"]).encode(), b"1" + b"0" * 30),
          "wrong_type", key=big["account_id"].encode())  # beyond 64 bits: a float to the parser

    # --- wrong keys -----------------------------------------------------------------------------
    for key in (None, b"", b"someone-else", b"ACCT"):
        c.add("wrong keys", fa, c.friend_add(), "key_mismatch", key=key)
    nfc = c.friend_add(account_id=f"caf\u00e9-{uid}")
    c.add("wrong keys", fa, nfc, "key_mismatch", key=f"cafe\u0301-{uid}".encode())  # NFD form
    c.add("wrong keys", "message-reports", {**report, "event_id": c.fresh()}, "key_mismatch",
          key=report["reporter_id"].encode())  # reports are keyed by the reported account

    # --- unicode edge cases in ids --------------------------------------------------------------
    weird = {
        "nul": f"nul\u0000{uid}", "rtl": f"\u202eevil-{uid}", "emoji": f"{EMOJI}-{uid}",
        "zwj": f"\U0001f468\u200d\U0001f469\u200d\U0001f467-{uid}", "newline": f"a\nb\r{uid}",
        "combining": f"e\u0301\u0301\u0301-{uid}", "bom": f"\ufeff{uid}",
        "max": (f"{EMOJI}{uid}" * MAX_ID_CHARS)[:MAX_ID_CHARS],
    }
    emulator_events: dict[str, str] = {}
    for name, account in weird.items():
        event_id = f"emu-{name}-{uid}"
        emulator_events[account] = event_id
        c.add("unicode ids", "device-signals", {"event_id": event_id, "ts": T0 + 1,
                                                "account_id": account, "device_id": f"dev-{name}",
                                                "emulator": True}, ACCEPTED)
    c.add("unicode ids", fa, c.friend_add(account_id=EMOJI * (MAX_ID_CHARS + 1)), "id_too_long")
    c.add("unicode ids", fa, c.friend_add(friend_id="f" * (MAX_ID_CHARS + 1)), "id_too_long")
    c.add("unicode ids", fa, c.friend_add(account_id=""), "empty_id", key=b"")
    lone = orjson.dumps(c.friend_add(event_id="LONE"))
    c.add("unicode ids", fa, lone.replace(b"LONE", b"\\ud800"), "invalid_json", key=b"k")
    c.add("unicode ids", fa, lone.replace(b"LONE", b"\xed\xa0\x80"), "not_utf8", key=b"k")
    c.add("unicode ids", fa, lone.replace(b"LONE", b"\xc0\xaf"), "not_utf8", key=b"k")
    c.add("unicode ids", fa, b"\xef\xbb\xbf" + orjson.dumps(c.friend_add()), "invalid_json",
          key=b"k")  # a byte-order mark before the object

    # --- duplicates -----------------------------------------------------------------------------
    first = c.friend_add()
    c.add("duplicates", fa, first, ACCEPTED)
    for _ in range(4):
        c.add("duplicates", fa, first, DUPLICATE)
    c.add("duplicates", fa, {**first, "friend_id": "someone-else", "ts": first["ts"] + 5},
          DUPLICATE)  # same (account, event_id), other content: still the first wins
    c.add("duplicates", fa, {**first, "account_id": c.fresh("acct")}, ACCEPTED)  # other account
    weird_first = {"event_id": emulator_events[weird["rtl"]], "ts": T0 + 1,
                   "account_id": weird["rtl"], "device_id": "dev-rtl", "emulator": True}
    c.add("duplicates", "device-signals", weird_first, DUPLICATE)
    command = {"command_id": c.fresh("cmd"), "ts": T0 + 10, "account_id": c.fresh("acct"),
               "actor": "op", "action": "restrict", "scopes": ["report"]}
    c.add("duplicates", "moderation-commands", command, ACCEPTED)
    c.add("duplicates", "moderation-commands", command, DUPLICATE)

    # --- commands that do not apply (rejected by the policy, not the decoder) ----------------
    for action in ("lift", "mark_false_positive"):
        c.add("inapplicable commands", "moderation-commands",
              {"command_id": c.fresh("cmd"), "ts": T0 + 20, "account_id": c.fresh("acct"),
               "actor": "op", "action": action}, "command_not_applicable")
    c.add("inapplicable commands", "moderation-commands",
          {"command_id": c.fresh("cmd"), "ts": T0 + 20, "account_id": c.fresh("acct"),
           "actor": "op", "action": "appeal_decided", "granted": True}, "command_not_applicable")
    return c.items, emulator_events


FUZZ_TOPICS = ("friend-adds", "room-creations", "message-reports", "device-signals",
               "moderation-commands")


def _nest(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def _oracle(topic: str, key: bytes | None, raw: bytes) -> str:
    event = decode(topic, raw)
    if isinstance(event, Rejected):
        return event.code
    return ACCEPTED if key == key_of(event).encode("utf-8", "surrogatepass") else "key_mismatch"


async def send_all(bootstrap: str, prefix: str, cases: list[Case]) -> list[tuple[str, int, int]]:
    """Send every case in order; (topic, partition, offset) of each, from the broker's acks."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                max_request_size=2_000_000)
    await producer.start()
    try:
        where = []
        for case in cases:
            meta = await (await producer.send(f"{prefix}{case.topic}", case.value, key=case.key))
            where.append((meta.topic, meta.partition, meta.offset))
        return where
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, kafka_bootstrap, redis_url):
    tmp = tmp_path_factory.mktemp("hostile")
    uid = uuid.uuid4().hex[:10]
    prefix, app_id = f"{uid}-", f"w{uid}"
    env = {"WARDEN_KAFKA_BOOTSTRAP": kafka_bootstrap, "WARDEN_REDIS_URL": redis_url,
           "WARDEN_TOPIC_PREFIX": prefix, "WARDEN_APP_ID": app_id, "WARDEN_REDIS_PREFIX": app_id,
           "WARDEN_PARTITIONS": str(PARTITIONS), "WARDEN_IDLE_ADVANCE": "false"}
    cases, emulator_events = build_cases(uid)
    rejected = sum(1 for case in cases if case.expect not in (ACCEPTED, DUPLICATE))
    with running_worker(tmp, env) as worker:
        where = asyncio.run(send_all(kafka_bootstrap, prefix, cases))
        reader = TopicReader(kafka_bootstrap, f"{prefix}dead-letters", PARTITIONS)
        letters = asyncio.run(reader.read_until(lambda v: len(v) >= rejected, timeout=120))
        # Committed offsets are not enough: an input may wait in the alignment buffer
        # (README "Time") after its offset is committed. Wait for what it must cause.
        wanted = set(emulator_events)

        def restricted(values: list[bytes]) -> bool:
            got = {d["account_id"] for d in map(orjson.loads, values) if d["type"] == "restricted"}
            return wanted <= got

        decisions = asyncio.run(TopicReader(kafka_bootstrap, f"{prefix}account-decisions",
                                            PARTITIONS).read_until(restricted, timeout=120))
        sent = Counter(case.topic for case in cases)
        duplicates = sum(1 for case in cases if case.expect == DUPLICATE)

        def counted() -> str | None:
            text = metrics_text(worker)
            events = {dict(k)["topic"]: v for k, v in
                      metric_samples(text, "warden_events_total").items()}
            seen = sum(metric_samples(text, "warden_duplicate_events_total").values())
            return text if events == {t: float(n) for t, n in sent.items()} \
                and seen >= duplicates else None

        with contextlib.suppress(AssertionError):  # a mismatch shows in the tests, as a diff
            wait_for(counted, timeout=60, interval=0.5, what="every input counted")
        wait_for(lambda: drained(kafka_bootstrap, prefix, app_id, PARTITIONS), timeout=120,
                 interval=1.0, what="the worker handled every hostile message")
        letters = asyncio.run(reader.read_until(lambda v: False, timeout=30, quiet_s=3))
        healthy = worker.healthy()
        metrics = metrics_text(worker)
        alive = worker.proc is not None and worker.proc.poll() is None
        log = worker.log_path.read_text(errors="replace")
    return {"cases": cases, "where": where, "letters": [orjson.loads(v) for v in letters],
            "decisions": [orjson.loads(v) for v in decisions], "healthy": healthy,
            "alive": alive, "log": log, "prefix": prefix, "redis_url": redis_url,
            "app_id": app_id, "emulator_events": emulator_events,
            "metrics": metrics}


def test_every_hostile_message_is_one_dead_letter_with_its_expected_code(hostile):
    expected = {where: case.expect for case, where in zip(hostile["cases"], hostile["where"],
                                                           strict=True)
                if case.expect not in (ACCEPTED, DUPLICATE)}
    got: dict[tuple[str, int, int], str] = {}
    for letter in hostile["letters"]:
        where = (letter["topic"], letter["partition"], letter["offset"])
        assert where not in got, f"two dead letters for one input: {where}"
        got[where] = letter["error"]
    wrong = {w: (expected.get(w), got.get(w)) for w in expected.keys() | got.keys()
             if expected.get(w) != got.get(w)}
    assert not wrong, f"(expected, got) per input: {wrong}"
    by_category = Counter(case.category for case in hostile["cases"])
    letters_by_category = Counter(case.category for case in hostile["cases"]
                                  if case.expect not in (ACCEPTED, DUPLICATE))
    print(f"{len(hostile['cases'])} hostile inputs, {len(got)} dead letters; per category "
          + ", ".join(f"{k}: {by_category[k]} sent / {letters_by_category[k]} dead-lettered"
                      for k in by_category))
    print("dead letters by code:", dict(Counter(got.values())))


def test_dead_letters_keep_the_original_message_or_a_bounded_digest_of_it(hostile):
    by_where = {where: case for case, where in zip(hostile["cases"], hostile["where"],
                                                   strict=True)}
    for letter in hostile["letters"]:
        case = by_where[(letter["topic"], letter["partition"], letter["offset"])]
        if letter.get("value_truncated"):
            assert letter["error"] == "too_large"
            assert letter["value_bytes"] == len(case.value or b"")
            continue
        if letter["value_encoding"] == "utf-8":
            raw = None if letter["value"] is None else letter["value"].encode()
        else:
            raw = base64.b64decode(letter["value"])
        assert raw == case.value or (case.value is None and raw in (None, b""))


def test_metrics_count_every_input_dead_letter_and_duplicate_exactly(hostile):
    cases, text = hostile["cases"], hostile["metrics"]
    sent = Counter(case.topic for case in cases)
    invalid = Counter((case.topic, case.expect) for case in cases
                      if case.expect not in (ACCEPTED, DUPLICATE))
    duplicates = Counter(case.topic for case in cases if case.expect == DUPLICATE)
    events = {dict(k)["topic"]: v for k, v in metric_samples(text, "warden_events_total").items()}
    assert events == {topic: float(n) for topic, n in sent.items()}
    got_invalid = {(dict(k)["topic"], dict(k)["error"]): v
                   for k, v in metric_samples(text, "warden_invalid_events_total").items()}
    assert got_invalid == {k: float(n) for k, n in invalid.items()}
    got_duplicates = {dict(k)["topic"]: v
                      for k, v in metric_samples(text, "warden_duplicate_events_total").items()}
    assert {k: v for k, v in got_duplicates.items() if v} == \
        {k: float(n) for k, n in duplicates.items()}
    print(f"duplicates ignored: {dict(duplicates)}")


def test_unicode_ids_are_decided_and_projected_byte_for_byte(hostile):
    restricted = {d["account_id"]: d for d in hostile["decisions"] if d["type"] == "restricted"}
    redis = Redis.from_url(hostile["redis_url"])
    client = SyncWardenClient(redis, prefix=hostile["app_id"], pointer_ttl_s=0)
    try:
        for account, event_id in hostile["emulator_events"].items():
            decision = restricted.get(account)
            assert decision is not None, f"no restriction for {account!r}"
            assert decision["triggers"] == ["emulator"]
            assert event_id in orjson.dumps(decision["evidence"]).decode()
            wait_for(lambda a=account: not client.is_allowed(a, "join_open_chat"), timeout=30,
                     what=f"{account!r} restricted in Redis")
    finally:
        client.close()


def test_the_worker_stays_up_and_healthy_with_no_traceback(hostile):
    assert hostile["alive"] and hostile["healthy"]
    assert "Traceback" not in hostile["log"]
    assert "[ERROR]" not in hostile["log"], [
        line for line in hostile["log"].splitlines() if "[ERROR]" in line][:5]
