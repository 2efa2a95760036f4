"""Security schemes in the OpenAPI document, so clients (and schemathesis) know how to authenticate.

With authentication on, ``components.securitySchemes`` declares ``bearerAuth`` (HTTP bearer: an OAuth access
token, a JWT, or an API key ``fta_...``) and, when API keys are accepted, ``apiKeyAuth`` (the ``X-API-Key``
header). Each operation that needs a scope lists both schemes with that scope (OpenAPI 3.1 lets non-OAuth
schemes carry role names) and repeats it as ``x-required-scopes``; open operations (/health) list none.
The scope is read from the route's ``require_scope`` dependency, so a new route is documented without
declaring anything twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, routing
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi

from api.http.auth import GatewayAuth
from services.auth import ALL_SCOPES

# require_scope(s) names its dependency require_<s with ':' -> '_'> (api.http.auth).
_SCOPE_OF_DEPENDENCY = {f"require_{s.replace(':', '_')}": s for s in ALL_SCOPES}
_AUTHENTICATED = "current_principal"


def _callables(dependant: Dependant) -> Iterator[str]:
    for dep in dependant.dependencies:
        name = getattr(dep.call, "__name__", "")
        if name:
            yield name
        yield from _callables(dep)


def route_security(route: Any) -> tuple[bool, list[str]]:
    """``(authenticated, scopes)`` a route requires, from its dependencies."""
    names = list(_callables(route.dependant))
    scopes = sorted({_SCOPE_OF_DEPENDENCY[n] for n in names if n in _SCOPE_OF_DEPENDENCY})
    return bool(scopes) or _AUTHENTICATED in names, scopes


def install_security_schema(app: FastAPI, gate: GatewayAuth) -> None:
    """Replace ``app.openapi`` with one that declares the gateway's security (nothing when auth is off)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        schemes: dict[str, Any] = {}
        if gate.enabled:
            schemes["bearerAuth"] = {
                "type": "http", "scheme": "bearer", "bearerFormat": "JWT or API key",
                "description": "An OAuth 2.1 access token (JWT) from the configured issuer, or an API key fta_..."}
            if gate.settings.effective_auth_mode in ("apikey", "both"):
                schemes["apiKeyAuth"] = {"type": "apiKey", "in": "header", "name": "X-API-Key",
                                         "description": "An API key fta_... (`finops-tags apikey create` or "
                                                        "POST /v1/api-keys)."}
            schema.setdefault("components", {})["securitySchemes"] = schemes
        # Route contexts, as get_openapi walks them: included routers carry their prefix and dependencies.
        for route in routing.iter_route_contexts(app.routes):
            if not isinstance(route.original_route, routing.APIRoute) or not route.include_in_schema:
                continue
            authenticated, scopes = route_security(route)
            for method in route.methods or ():
                operation = schema["paths"].get(route.path_format, {}).get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                if (route.path_format or "").startswith("/v1/"):
                    responses["429"] = {"description": "A per-caller limit was reached (rate_limited); see the "
                                                       "Retry-After header and the message."}
                    if method in ("POST", "PUT", "PATCH"):
                        responses["413"] = {"description": "The body is over FINOPS_AGENT_MAX_BODY_BYTES."}
                if schemes and authenticated:
                    operation["security"] = [{name: scopes} for name in schemes]
                    operation["x-required-scopes"] = scopes
                    responses["401"] = {"description": "No credential, or one that does not verify."}
                    responses["403"] = {"description": "The caller lacks the scope (insufficient_scope)."}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
