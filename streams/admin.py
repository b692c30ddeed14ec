"""Operator commands from the command line: build, validate, publish (SPEC "Interfaces").

Like the HTTP `/commands` endpoint, nothing here writes state: a command is a
message on `moderation-commands`, validated by the same decoder the worker
uses, and the worker turns it into a decision. The CLI modules
(streams/appeal_cmd.py, lift_cmd.py, false_positive_cmd.py, restrict_cmd.py)
only parse arguments and call `submit`.

Exit status: 0 published, 2 rejected by the decoder (its error code is
printed), 1 Kafka unreachable or the topic missing.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import re
import sys
import time
import uuid
from typing import Any

import orjson
from aiokafka.errors import KafkaError

from detectors.events import Rejected, decode_object
from streams.logsafe import safe
from streams.settings import Settings, SettingsError

TOPIC = "moderation-commands"
PUBLISH_TIMEOUT_S = 20.0
_DURATION = re.compile(r"(\d+)\s*(d|h|m|s)")
_UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000}


class MissingTopic(RuntimeError):
    """The topic does not exist (the local broker does not auto-create topics)."""


def parse_duration(text: str) -> int:
    """'2d', '36h', '90m', '45s' or combinations ('1d12h') -> milliseconds (argparse type)."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise argparse.ArgumentTypeError(
            f"invalid duration {text!r}: use a number with d, h, m or s, e.g. 2d, 36h, 90m")
    return sum(int(n) * _UNIT_MS[u] for n, u in parts)


def parse_scopes(text: str) -> list[str]:
    """'add_friend,report' -> ['add_friend', 'report'] (the decoder checks the names)."""
    return [s.strip() for s in text.split(",") if s.strip()]


def default_actor() -> str | None:
    """$USER, else the login name the OS knows (containers often leave $USER unset)."""
    if os.environ.get("USER"):
        return os.environ["USER"]
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None  # the decoder then rejects the command: missing_field actor


def add_common(parser: argparse.ArgumentParser) -> None:
    """ID, --actor and --note: every operator command has them."""
    parser.add_argument("account_id", metavar="ID", help="the account the command is about")
    parser.add_argument("--actor", default=default_actor(),
                        help="who decides (recorded on the decision; default: $USER)")
    parser.add_argument("--note", help="free text kept in the decision's evidence")


def build_command(action: str, args: argparse.Namespace, *, now_ms: int | None = None,
                  **fields: Any) -> dict[str, Any]:
    """The `moderation-commands` value: a fresh command_id, ts = now, optional fields dropped."""
    command: dict[str, Any] = {
        "command_id": f"cli-{uuid.uuid4()}",
        "ts": int(time.time() * 1000) if now_ms is None else now_ms,
        "account_id": args.account_id,
        "actor": args.actor,
        "action": action,
        **fields,
        "note": args.note,
    }
    return {k: v for k, v in command.items() if v is not None}


async def publish(settings: Settings, command: dict[str, Any]) -> None:
    """Send one command keyed by account id and wait for the broker's ack (acks=all)."""
    from aiokafka import AIOKafkaProducer

    topic = settings.topics.input(TOPIC)
    producer = AIOKafkaProducer(**settings.aiokafka_options(), acks="all")
    await asyncio.wait_for(producer.start(), PUBLISH_TIMEOUT_S)
    try:
        # send() would wait out the metadata timeout on a missing topic; say so at once
        metadata = await asyncio.wait_for(producer.client.fetch_all_metadata(), PUBLISH_TIMEOUT_S)
        if topic not in metadata.topics():
            raise MissingTopic(topic)
        await producer.send_and_wait(topic, orjson.dumps(command),
                                     key=command["account_id"].encode())
    finally:
        await producer.stop()


def submit(name: str, command: dict[str, Any], settings: Settings | None = None) -> int:
    """Validate with the worker's decoder, publish, print the command_id (stdout)."""
    checked = decode_object(TOPIC, command)
    if isinstance(checked, Rejected):
        print(f"warden {name}: rejected: {checked.code}: {safe(checked.detail, 300)}",
              file=sys.stderr)
        return 2
    try:
        settings = settings or Settings.from_env()
    except SettingsError as exc:
        print(f"warden {name}: {safe(exc, 500)}", file=sys.stderr)
        return 2
    topic = settings.topics.input(TOPIC)
    try:
        asyncio.run(publish(settings, command))
    except MissingTopic:
        print(f"warden {name}: topic {topic!r} does not exist on {settings.kafka_bootstrap} "
              f"(a worker creates it on start)", file=sys.stderr)
        return 1
    except (TimeoutError, OSError, KafkaError) as exc:
        print(f"warden {name}: cannot publish to {topic!r} on {settings.kafka_bootstrap}: "
              f"{safe(repr(exc), 500)}", file=sys.stderr)
        return 1
    print(f"warden {name}: published {command['action']} for account "
          f"{safe(command['account_id'], 128)!r} by {safe(command['actor'], 128)!r} to {topic}",
          file=sys.stderr)
    print(command["command_id"])
    return 0
