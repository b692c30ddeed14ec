"""`warden account show ID [--json] [--limit N]`: an account's status and why, from Redis.

Reads the live namespace of the read model (SPEC "Redis read model") and
never creates it; the evidence is put in words by streams/explain.py.
Exit status 1 when the read model has no decision for the account.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson
from redis.exceptions import RedisError

from projections.rebuild import current_namespace
from projections.redis_view import RedisView
from projections.view import AccountStatus
from streams.explain import describe, when
from streams.logsafe import safe
from streams.settings import Settings, SettingsError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="account_command", required=True, metavar="ACTION")
    show = sub.add_parser("show", help="status and recent decisions, evidence in words")
    show.add_argument("account_id", metavar="ID")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("--limit", type=int, default=10, help="recent decisions to show (10)")


async def load(settings: Settings, account_id: str,
               limit: int) -> tuple[AccountStatus | None, list[dict[str, Any]], str | None]:
    """(status, newest-first decisions, namespace) from the live namespace, or (None, [], ns)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(settings.redis_url, **settings.redis_options())
    try:
        namespace = await current_namespace(redis, settings.redis_prefix)
        if namespace is None:
            return None, [], None
        view = RedisView(redis, settings.redis_prefix, namespace)
        status = await view.status(account_id)
        history = await view.history(account_id, limit) if status is not None else []
        return status, history, namespace
    finally:
        await redis.aclose()


def render(status: AccountStatus, history: list[dict[str, Any]]) -> str:
    """A page for an operator: what is limited, until when, and each decision's evidence."""
    if status.restricted:
        head = (f"account {status.account_id}: RESTRICTED at level {status.level}"
                f" since {when(status.since_ms)}")
        lines = [head,
                 f"  limited features: {', '.join(status.scopes)}",
                 f"  lifts:            {when(status.lift_at_ms)}",
                 f"  triggers:         {', '.join(status.triggers) or '-'}",
                 f"  appeal pending:   {'yes' if status.appeal_pending else 'no'}"]
        if status.appeal_allowed_at_ms is not None:
            lines.append(f"  appeal possible:  from {when(status.appeal_allowed_at_ms)}")
    else:
        lines = [f"account {status.account_id}: clear (every feature allowed)"]
        if status.level:
            lines.append(f"  last restriction level: {status.level}")
    lines.append(f"  last decision:    #{status.seq} {status.type} at {when(status.at_ms)}"
                 + (f" ({status.reason})" if status.reason else ""))
    lines.append("")
    lines.append(f"Recent decisions, newest first ({len(history)}):")
    lines.extend(describe(d) for d in history)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"warden account show: {safe(exc, 500)}", file=sys.stderr)
        return 2
    try:
        status, history, namespace = asyncio.run(
            load(settings, args.account_id, max(args.limit, 0)))
    except (OSError, RedisError) as exc:
        print(f"warden account show: cannot read Redis at "
              f"{settings.redacted()['redis_url']}: {safe(repr(exc), 500)}", file=sys.stderr)
        return 1
    if status is None:
        where = (f"namespace {namespace!r}" if namespace
                 else "no projection yet: no worker has written")
        account = safe(args.account_id, 128)
        print(f"warden account show: unknown account {account!r}: no decision in the "
              f"read model (prefix {settings.redis_prefix!r}, {where})", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(orjson.dumps({"status": status.to_dict(), "decisions": history},
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        # ids and actors come from the input topics: no line may carry control characters
        print("\n".join(safe(line, 4000) for line in render(status, history).split("\n")))
    return 0
