"""Agent safety at the HTTP front door: body size, sanitized error answers, and the per-principal guard.

``create_app`` wires all three, once each:

- ``BodySizeLimit`` (ASGI, outermost): a body over FINOPS_AGENT_MAX_BODY_BYTES answers 413 before it is read
  into memory (by Content-Length when declared, else while streaming). Covers /v1 and /mcp alike.
- ``SanitizeErrors`` (ASGI): every JSON error answer (status >= 400) goes through
  ``services.error_sanitizer`` -- one pass for the app's own errors, validation errors, routing 404/405 and
  the MCP transport's 401s.
- ``agent_guard`` (an app-wide dependency): for /v1 routes, field sizes of the query and the JSON body, then
  the caller's rate, daily quota and identical-call loop limits (services.agent_safety).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http.auth import current_principal
from services.agent_safety import ToolClass, check_input_size, guard_for
from services.error_sanitizer import ErrorSanitizer
from services.runtime import Runtime

# REST calls by class for the daily quotas; other GETs are reads, other POST/PATCH/DELETE are writes.
_EXPENSIVE = frozenset({("POST", "/v1/scans"), ("POST", "/v1/resources/validate"), ("GET", "/v1/cost/gap"),
                        ("POST", "/v1/tagging-requests/{request_id}/verify")})
# POSTs that only compute an answer (a body too large for a query string), changing nothing.
_READ_POSTS = frozenset({("POST", "/v1/policy/validate"), ("POST", "/v1/tagging-requests/preview"),
                         ("POST", "/v1/suggestions")})


def http_call_class(method: str, route_path: str) -> tuple[ToolClass, bool]:
    """``(class, polling)`` of a REST call. GETs are how scripts follow a running scan or request, so the
    loop detection treats them as polls (the higher FINOPS_AGENT_POLL_REPEAT_LIMIT)."""
    if (method, route_path) in _EXPENSIVE:
        return ToolClass.EXPENSIVE, False
    if method in ("GET", "HEAD"):
        return ToolClass.READ, True
    if (method, route_path) in _READ_POSTS:
        return ToolClass.READ, False
    return ToolClass.WRITE, False


def _error_body(status: int, code: str, message: str, field: str, fix: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, "field": field, "fix": fix}}).encode()


class BodySizeLimit:
    """Answers 413 for a request body over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, send: Send, size: str) -> None:
        body = _error_body(413, "payload_too_large", f"the request body is {size}; at most {self.max_bytes:,} "
                           "bytes are accepted", "body",
                           "send fewer items per request (split lists over several requests); the operator can "
                           "raise FINOPS_AGENT_MAX_BODY_BYTES")
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k.lower() == b"content-length"), None)
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length > self.max_bytes:
                await self._refuse(send, f"{length:,} bytes")
                return
        if declared is None and scope.get("method") in ("POST", "PUT", "PATCH"):
            # A streamed body of unknown length is read up to the limit before the app sees it: refusing
            # half-way through the app's own body parsing would surface as its "cannot parse" 400 instead.
            buffered: list[Message] = []
            total = 0
            while True:
                message = await receive()
                buffered.append(message)
                if message["type"] != "http.request":
                    break
                total += len(message.get("body", b""))
                if total > self.max_bytes:
                    await self._refuse(send, f"over {self.max_bytes:,} bytes")
                    return
                if not message.get("more_body", False):
                    break

            async def replay() -> Message:
                return buffered.pop(0) if buffered else await receive()

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)


class SanitizeErrors:
    """Rewrites JSON error answers (status >= 400) through an ErrorSanitizer."""

    def __init__(self, app: ASGIApp, sanitizer: ErrorSanitizer) -> None:
        self.app = app
        self.sanitizer = sanitizer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def rewriting_send(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                is_json = headers.get(b"content-type", b"").split(b";")[0].strip().endswith(b"json")
                if message["status"] >= 400 and is_json:
                    start = message  # held back until the whole body is here
                    return
                await send(message)
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = self._clean(b"".join(chunks))
            kept = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*kept, (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewriting_send)

    def _clean(self, body: bytes) -> bytes:
        try:
            data = json.loads(body)
        except ValueError:
            return self.sanitizer.text(body.decode(errors="replace")).encode()
        return json.dumps(self.sanitizer.value(data)).encode()


def make_agent_guard(runtime: Callable[[], Runtime]) -> Callable[[Request], Any]:
    """The app-wide dependency: size limits of the query and JSON body, then the caller's limits (/v1 only:
    /health, /metrics and the documentation stay open to probes)."""

    async def agent_guard(request: Request) -> None:
        path = request.url.path
        if not path.startswith("/v1/"):
            return
        rt = await anyio.to_thread.run_sync(runtime)
        check_input_size(dict(request.query_params), rt.settings, root="query")
        body = await request.body()
        if body and request.headers.get("content-type", "").split(";")[0].strip().endswith("json"):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None  # the route's own validation answers 422 naming the body
            if parsed is not None:
                check_input_size(parsed, rt.settings, root="body")
        principal = await current_principal(request)
        route = request.scope.get("route")
        route_path = getattr(route, "path", path)
        tool_class, polling = http_call_class(request.method, route_path)
        arguments = {"path": path, "query": sorted(request.query_params.multi_items()),
                     "body": body.decode(errors="replace")}
        guard = guard_for(rt)
        await anyio.to_thread.run_sync(lambda: guard.check(
            rt.settings, principal=principal.name, tool=f"{request.method} {route_path}", arguments=arguments,
            tool_class=tool_class, polling=polling))

    return agent_guard
