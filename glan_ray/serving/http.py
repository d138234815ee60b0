"""The ingress's HTTP guards, as plain ASGI middleware and FastAPI exception handlers.

- ``BodyLimit``: a body over the limit is a 413 before anything parses it, whether the client
  declares a ``content-length`` or streams it chunked (the bytes are counted as they arrive and
  reading stops at the limit).
- ``ApiKey``: with a key configured, every route but the health checks needs
  ``Authorization: Bearer <key>`` (401 otherwise).
- ``validation_problem``: a 422 that names each invalid field and never echoes large input (only
  a short scalar is quoted back), and that always serialises (a ``NaN`` in the input is not
  copied into the JSON answer); a body that is not JSON at all (truncated, trailing garbage) is
  a 400, as documented.
- ``unavailable``: the state store or a model replica is down: 503 with ``Retry-After``, never a
  500; the next request tries again, so service recovers by itself.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which costs a task and a stream per
request on the hot path.
"""

from __future__ import annotations

import hmac
import json
import math
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_S = 2
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/openapi.json"})
"""Routes that answer without the API key: the probes of a load balancer or orchestrator, and
the API's description (``/docs`` and its files under ``/docs-assets/``)."""


class Unavailable(Exception):
    """A dependency (the state store, a model replica) cannot answer now: 503 + Retry-After."""


async def _send_json(send: Send, status: int, body: dict[str, Any], headers=()) -> None:
    raw = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*head, *headers]})
    await send({"type": "http.response.body", "body": raw})


class BodyLimit:
    """413 for a request body over ``limit`` bytes, by its declared length or as it streams."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if size and (not size.isdigit() or int(size) > self.limit):
            await self._too_large(send, f"content-length {size[:20]}")
            return
        # Read the whole body now (at most ``limit`` bytes), then replay it to the app.
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.limit:
                await self._too_large(send, "streamed")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # http.disconnect, when it comes

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send, how: str) -> None:
        detail = f"request body over {self.limit} bytes ({how})"
        await _send_json(send, 413, {"detail": detail}, [(b"connection", b"close")])


class ApiKey:
    """401 unless ``Authorization: Bearer <key>``, the key being the app's ``state.api_key``
    (set by the ingress replica; None lets everything through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = getattr(scope["app"].state, "api_key", None) if "app" in scope else None
        route = _route(scope) if scope["type"] == "http" else ""
        if not key or not route or route in OPEN_PATHS or route.startswith("/docs-assets/"):
            await self.app(scope, receive, send)
            return
        auth = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = auth.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), key.encode()):
            await _send_json(
                send,
                401,
                {"detail": "missing or wrong API key (Authorization: Bearer <key>)"},
                [(b"www-authenticate", b"Bearer")],
            )
            return
        await self.app(scope, receive, send)


def _route(scope: Scope) -> str:
    """The path inside the app (Serve mounts an app under its route prefix)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _quotable(value: Any) -> bool:
    if isinstance(value, bool) or value is None:
        return True
    if isinstance(value, int):
        return abs(value) < 10**15
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, str) and len(value) <= 40


async def validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each invalid field; the input only when it is a short scalar. A body that does
    not parse as JSON (FastAPI reports it as a ``json_invalid`` validation error) is a 400."""
    errors = exc.errors()
    status = 400 if any(e.get("type") == "json_invalid" for e in errors) else 422
    problems = []
    for err in errors[:20]:
        item = {
            "loc": [str(x)[:64] for x in err.get("loc", ())],
            "msg": str(err.get("msg", ""))[:200],
            "type": str(err.get("type", "")),
        }
        if _quotable(err.get("input")):
            item["input"] = err["input"]
        problems.append(item)
    return JSONResponse({"detail": problems}, status)


async def unavailable(request: Request, exc: Unavailable) -> JSONResponse:
    return JSONResponse(
        {"detail": f"temporarily unavailable: {exc}; retry the same event"},
        503,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )
