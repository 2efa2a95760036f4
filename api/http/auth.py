"""REST access control: FastAPI dependencies that know the caller.

Every router under /v1 is included with ``Depends(require_scope(...))`` (see create_app): no credential
or a bad one answers 401 with ``WWW-Authenticate: Bearer resource_metadata="..."``; a valid caller
without the scope answers 403 ``insufficient_scope`` naming it. A route that needs the caller's identity
or a different scope declares it itself::

    @router.post("/requests")
    def create(rt: RuntimeDep, who: Annotated[Principal, Depends(require_scope(TAG_WRITE))]) -> ...:
        tagging.create_request(rt, ..., requested_by=who.name, scopes=who.scopes)

With auth off (embedded local mode) the caller is ``anonymous`` holding every scope, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
from fastapi import Depends, Request
from pydantic import AnyHttpUrl, ConfigDict, TypeAdapter
from starlette.routing import BaseRoute

from services.auth import (
    ALL_SCOPES,
    Authenticator,
    InsufficientScope,
    Principal,
    Unauthenticated,
    credential_from_headers,
)
from services.config import Settings
from services.runtime import Runtime

METADATA_PATH = "/.well-known/oauth-protected-resource"
# Issuer identifiers compare as exact strings (RFC 8414/9207): no trailing slash may be added.
_URL: TypeAdapter[AnyHttpUrl] = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True))


def _url(value: str) -> AnyHttpUrl:
    return _URL.validate_python(value)


class GatewayAuth:
    """The gateway's authenticator, built on first use (API keys need the runtime's database)."""

    def __init__(self, settings: Settings, runtime: Callable[[], Runtime], base_url: str) -> None:
        self.settings = settings
        self.enabled = settings.effective_auth_mode != "off"
        self.oauth = settings.effective_auth_mode in ("oauth", "both")
        self.base_url = base_url.rstrip("/")
        self._runtime = runtime
        self._authenticator: Authenticator | None = None
        self._lock = threading.Lock()

    @property
    def authenticator(self) -> Authenticator:
        with self._lock:
            if self._authenticator is None:
                db = self._runtime().db if self.settings.effective_auth_mode in ("apikey", "both") else None
                self._authenticator = Authenticator(self.settings, db)
            return self._authenticator

    def resource_url(self, path: str = "") -> AnyHttpUrl:
        return _url(self.base_url + path)

    def challenge(self, error: str | None = None, scope: str | None = None) -> str:
        parts = []
        if error:
            parts.append(f'error="{error}"')
        if scope:
            parts.append(f'scope="{scope}"')
        if self.oauth:
            parts.append(f'resource_metadata="{self.base_url}{METADATA_PATH}"')
        return "Bearer " + ", ".join(parts) if parts else "Bearer"


def gateway_auth(request: Request) -> GatewayAuth:
    auth: GatewayAuth = request.app.state.auth
    return auth


async def current_principal(request: Request) -> Principal:
    """The verified caller of this request (also kept in ``request.state.principal`` for the audit log)."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    auth = gateway_auth(request)
    credential = credential_from_headers(request.headers.get("authorization"), request.headers.get("x-api-key"))
    try:
        principal = await anyio.to_thread.run_sync(lambda: auth.authenticator.authenticate(credential))
    except Unauthenticated as exc:
        exc.headers = {"WWW-Authenticate": auth.challenge("invalid_token" if credential else None)}
        raise
    request.state.principal = principal
    return principal


def require_scope(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency returning the caller after checking it holds ``scope`` (401 / 403 otherwise)."""

    async def dependency(request: Request) -> Principal:
        principal = await current_principal(request)
        if not principal.has(scope):
            exc = InsufficientScope(scope, principal)
            exc.headers = {"WWW-Authenticate": gateway_auth(request).challenge("insufficient_scope", scope)}
            raise exc
        return principal

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def mcp_auth_kwargs(gate: GatewayAuth) -> dict[str, Any]:
    """``build_mcp_server`` arguments that make /mcp/ require a bearer token (JWT or API key), verified by
    the same Authenticator as REST; empty when auth is off."""
    if not gate.enabled:
        return {}
    from mcp.server.auth.settings import AuthSettings

    from api.mcp.auth import McpTokenVerifier

    issuer = gate.settings.oauth_issuer if gate.oauth and gate.settings.oauth_issuer else gate.base_url
    # Scopes are checked per tool (read tools need tag:read, writes tag:write/approve), not at the door;
    # the audience is checked by the verifier itself (validate_token_resource=False).
    auth = AuthSettings(issuer_url=_url(issuer), required_scopes=[],
                        resource_server_url=gate.resource_url("/mcp") if gate.oauth else None,
                        validate_token_resource=False)
    return {"token_verifier": McpTokenVerifier(lambda: gate.authenticator), "auth": auth}


def metadata_routes(gate: GatewayAuth) -> list[BaseRoute]:
    """RFC 9728 protected-resource metadata for the REST API and for /mcp (only with OAuth on: it names
    the authorization server a client should get a token from)."""
    if not (gate.enabled and gate.oauth and gate.settings.oauth_issuer):
        return []
    from mcp.server.auth.routes import create_protected_resource_routes

    routes: list[BaseRoute] = []
    for path in ("", "/mcp"):
        routes.extend(create_protected_resource_routes(
            resource_url=gate.resource_url(path), authorization_servers=[_url(gate.settings.oauth_issuer)],
            scopes_supported=list(ALL_SCOPES), resource_name="finops-tag-compliance"))
    return routes
