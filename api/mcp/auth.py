"""Who calls an MCP tool, and with which scopes.

Over streamable HTTP with auth on, the SDK's bearer middleware verifies the token with ``McpTokenVerifier``
(the same ``services.auth.Authenticator`` REST uses) and keeps it in a context variable for the call;
``caller`` turns it back into a ``Principal``. Without a token in context (stdio, or HTTP with auth off)
the caller is the server's local principal: over stdio read-only unless FINOPS_STDIO_SCOPES says otherwise,
over HTTP with auth off every scope (the embedded local mode).

Tools check their scope with ``require(local, scope)`` (``_guarded`` in server.py does it for every tool:
read tools need tag:read; pass ``scope=`` to ``call`` for the others).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import anyio
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from starlette.types import ASGIApp, Receive, Scope, Send

from services.auth import Authenticator, Principal
from services.errors import AppError

_KIND_SEPARATOR = "|"


class McpTokenVerifier:
    """The SDK's TokenVerifier over the project's Authenticator (JWT access tokens and API keys)."""

    def __init__(self, authenticator: Callable[[], Authenticator]) -> None:
        self.authenticator = authenticator  # lazy: API keys need the runtime's database

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            principal = await anyio.to_thread.run_sync(lambda: self.authenticator().authenticate(token))
        except AppError:
            return None  # the SDK answers 401 with the resource metadata challenge
        return AccessToken(token=token, client_id=f"{principal.kind}{_KIND_SEPARATOR}{principal.name}",
                           scopes=sorted(principal.scopes), subject=principal.name)


def caller(local: Principal) -> Principal:
    """The principal of the current tool call: the verified token's, else ``local``."""
    token = get_access_token()
    if token is None:
        return local
    kind, _, name = token.client_id.partition(_KIND_SEPARATOR)
    return Principal(name or token.client_id, frozenset(token.scopes), kind if name else "oauth")


def require(local: Principal, scope: str) -> Principal:
    """The current caller, after checking it holds ``scope`` (InsufficientScope -> isError naming it)."""
    who = caller(local)
    who.require(scope)
    return who


class ApiKeyHeader:
    """ASGI wrapper of the /mcp/ app: ``X-API-Key: fta_...`` becomes ``Authorization: Bearer fta_...`` for the
    SDK's bearer middleware (service accounts use either header, as on REST), and a refused request (401/403
    from that middleware, before any tool runs) is reported to ``on_refused(method, status)`` for the audit log."""

    def __init__(self, app: ASGIApp, on_refused: Callable[[str, int], Any] | None = None) -> None:
        self.app = app
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        names = {k.lower() for k, _ in headers}
        if b"authorization" not in names:
            key = next((v for k, v in headers if k.lower() == b"x-api-key"), None)
            if key:
                scope = {**scope, "headers": [*headers, (b"authorization", b"Bearer " + key.strip())]}
        on_refused = self.on_refused
        if on_refused is None:
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", ""))

        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] in (401, 403):
                with contextlib.suppress(Exception):  # the audit never breaks the answer
                    await anyio.to_thread.run_sync(lambda: on_refused(method, int(message["status"])))
            await send(message)

        await self.app(scope, receive, watch)
