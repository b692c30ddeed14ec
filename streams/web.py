"""HTTP on the worker's Faust web server (SPEC "Interfaces").

Reads come from the Redis read model; operator commands are only ever
*published* to `moderation-commands` — nothing here writes state directly.
Errors are JSON: `{"error": CODE, "detail": TEXT}`.
"""

from __future__ import annotations

import hmac
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from faust import web

from detectors.events import SCOPES, Rejected, decode_object
from projections.redis_view import RedisView
from streams.sending import track_topic

if TYPE_CHECKING:
    from streams.app import Warden

MAX_BODY_BYTES = 16384
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
}
STATIC_DIR = Path(__file__).parent / "static"
CONSOLE_FILES = {  # the operator console: same-origin files only, so the CSP stays strict
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


def _json(view: web.View, body: Any, status: int = 200) -> web.Response:
    response = view.bytes(orjson.dumps(body), content_type="application/json", status=status)
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def _file(view: web.View, name: str, content_type: str) -> web.Response:
    # aiohttp refuses a charset in content_type=, so the full header goes in headers=.
    return view.bytes((STATIC_DIR / name).read_bytes(),
                      headers={**SECURITY_HEADERS, "Content-Type": content_type})


def _error(view: web.View, status: int, code: str, detail: str) -> web.Response:
    return _json(view, {"error": code, "detail": detail}, status)


def authorize(warden: Warden, request: web.Request, *, write: bool) -> tuple[int, str, str] | None:
    """None if allowed, else (status, code, detail). Constant-time token comparison."""
    token = warden.settings.operator_token
    if not write and not warden.settings.protect_reads:
        return None
    if token is None:
        return (403, "operator_api_disabled", "set WARDEN_OPERATOR_TOKEN to enable this endpoint")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        return (401, "missing_token", "send Authorization: Bearer <operator token>")
    if not hmac.compare_digest(given.encode(), token.encode()):
        return (403, "invalid_token", "the operator token is not valid")
    return None


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    host = request.headers.get("Host", "")
    return origin.split("://", 1)[-1].rstrip("/") == host


def register(warden: Warden) -> None:
    app = warden.app

    async def view_for_reads() -> RedisView:
        await warden.projector.start()
        return await warden.projector._current_view()

    @app.page("/health")
    async def health(self: web.View, request: web.Request) -> web.Response:
        recovered = warden.recovered
        redis_ok = warden.projector.healthy
        ok = recovered and redis_ok and not warden.stalled
        status = "ok" if ok else "stalled" if warden.stalled else "unavailable"
        body = {"status": status, "recovered": recovered, "redis": redis_ok,
                "stalled": warden.stalled, "redis_error": warden.projector.last_error,
                "policy_version": warden.policy.version}
        return _json(self, body, 200 if ok else 503)

    @app.page("/accounts/{account_id}")
    async def account(self: web.View, request: web.Request, account_id: str) -> web.Response:
        denied = authorize(warden, request, write=False)
        if denied:
            return _error(self, *denied)
        view = await view_for_reads()
        status = await view.status(account_id)
        limit = min(int(request.query.get("limit", "50") or 50), 200)
        history = await view.history(account_id, limit)
        body = {"account_id": account_id,
                **(status.to_dict() if status else {"status": "clear", "scopes": []}),
                "decisions": history}
        return _json(self, body)

    @app.page("/accounts/{account_id}/allowed/{feature}")
    async def allowed(self: web.View, request: web.Request, account_id: str,
                      feature: str) -> web.Response:
        denied = authorize(warden, request, write=False)
        if denied:
            return _error(self, *denied)
        if feature not in SCOPES:
            return _error(self, 422, "invalid_feature", f"feature must be one of {', '.join(SCOPES)}")
        status = await (await view_for_reads()).status(account_id)
        is_allowed = status is None or feature not in status.scopes
        return _json(self, {"account_id": account_id, "feature": feature, "allowed": is_allowed})

    @app.page("/restrictions")
    async def restrictions(self: web.View, request: web.Request) -> web.Response:
        denied = authorize(warden, request, write=False)
        if denied:
            return _error(self, *denied)
        order = request.query.get("order", "soonest_lift")
        if order not in ("soonest_lift", "newest"):
            return _error(self, 422, "invalid_order", "order must be soonest_lift or newest")
        limit = max(1, min(int(request.query.get("limit", "50") or 50), 200))
        offset = max(0, int(request.query.get("offset", "0") or 0))
        view = await view_for_reads()
        entries = await view.active(limit, offset, order)
        return _json(self, {"order": order, "offset": offset, "limit": limit,
                            "total": await view.count_active(),
                            "restrictions": [_plain(e) for e in entries]})

    @app.page("/commands")
    class Commands(web.View):
        async def post(self, request: web.Request) -> web.Response:
            denied = authorize(warden, request, write=True)
            if denied:
                return _error(self, *denied)
            if not _same_origin(request):
                return _error(self, 403, "cross_origin", "cross-origin writes are refused")
            raw = await request.read()
            if len(raw) > MAX_BODY_BYTES:
                return _error(self, 413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return _error(self, 422, "invalid_json", "body must be a JSON object")
            if not isinstance(body, dict):
                return _error(self, 422, "not_object", "body must be a JSON object")
            body.setdefault("command_id", f"http-{uuid.uuid4()}")
            body.setdefault("ts", int(time.time() * 1000))
            command = decode_object("moderation-commands", body)
            if isinstance(command, Rejected):
                return _error(self, 422, command.code, command.detail)
            topic = warden.settings.topics.input("moderation-commands")
            await track_topic(warden._aiokafka_producer(), topic)  # (streams/sending.py)
            future = await warden.app.producer.send(
                topic, command.account_id.encode(), orjson.dumps(body), None, None, None)
            await future
            return _json(self, {"accepted": True, "command_id": command.command_id,
                                "account_id": command.account_id}, 202)

    @app.page("/console")
    async def console(self: web.View, request: web.Request) -> web.Response:
        return _file(self, "console.html", "text/html; charset=utf-8")

    @app.page("/console/{name}")
    async def console_file(self: web.View, request: web.Request, name: str) -> web.Response:
        if name not in CONSOLE_FILES:
            return _error(self, 404, "not_found", f"no console file {name!r}")
        return _file(self, name, CONSOLE_FILES[name])


def _plain(entry: Any) -> Any:
    to_dict = getattr(entry, "to_dict", None)
    if to_dict is not None:
        return to_dict()
    if hasattr(entry, "__dataclass_fields__"):
        return {k: getattr(entry, k) for k in entry.__dataclass_fields__}
    return entry
