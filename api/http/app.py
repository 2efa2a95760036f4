"""The FastAPI gateway: REST under /v1, /health, /metrics, OpenAPI at /docs, and MCP at /mcp/."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api.http import routes
from api.http.apikeys import apikeys_router
from api.http.audit import audit_router
from api.http.auth import GatewayAuth, current_principal, mcp_auth_kwargs, metadata_routes, require_scope
from api.http.cost import cost_router
from api.http.exports import exports_router
from api.http.history import history_router
from api.http.openapi_security import install_security_schema
from api.http.reports import reports_router
from api.http.safety import BodySizeLimit, SanitizeErrors, make_agent_guard
from api.http.schedules import schedules_router
from api.http.suggestions import suggestions_router
from api.http.tagging import tagging_router
from api.mcp.auth import ApiKeyHeader
from api.mcp.server import build_mcp_server
from services import audit, metrics, policy_sources
from services.auth import TAG_READ
from services.config import Settings, get_settings
from services.error_sanitizer import ErrorSanitizer, public_hosts_of
from services.errors import AppError
from services.runtime import Runtime

log = logging.getLogger(__name__)
_CORRELATION = re.compile(r"[A-Za-z0-9._-]{1,64}")


def create_app(runtime: Callable[[], Runtime], *, host: str = "127.0.0.1", settings: Settings | None = None) -> FastAPI:
    """Build the gateway. ``runtime`` returns the process' Runtime (built at start-up); ``host`` is the
    bind address (DNS-rebinding protection of /mcp/ is on for loopback binds). ``settings`` (default: the
    environment's) decide access control (services.auth) for REST and /mcp/ alike."""
    settings = settings or get_settings()
    gate = GatewayAuth(settings, runtime, settings.public_url or f"http://{host}:{settings.port}")
    mcp = build_mcp_server(runtime, principal="http", **mcp_auth_kwargs(gate))
    mcp_app = mcp.streamable_http_app(streamable_http_path="/", host=host)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        rt = await anyio.to_thread.run_sync(runtime)  # migrate + start the embedded worker before serving
        # Organization tag policies are synced in the background: a large organization takes minutes and
        # the gateway must answer /health meanwhile; scans submitted before it ends use what is stored.
        threading.Thread(target=policy_sources.sync_if_due, args=(rt,), kwargs={"trigger": "startup"},
                         daemon=True, name="policy-sync").start()
        async with mcp.session_manager.run():
            yield

    # Agent safety (api.http.safety): every /v1 call passes the per-principal guard (one app-wide dependency).
    app = FastAPI(title="finops-tag-compliance", version="0.1.0", lifespan=lifespan,
                  description="Tag compliance across a cloud estate. MCP over streamable HTTP is at /mcp/ "
                              "(note the trailing slash).", dependencies=[Depends(make_agent_guard(runtime))])
    app.state.runtime = runtime
    app.state.auth = gate
    install_security_schema(app, gate)
    # Inner to the audit middleware below, so refused bodies and sanitized answers are audited as sent.
    app.add_middleware(SanitizeErrors, sanitizer=ErrorSanitizer(public_hosts_of(settings.public_url,
                                                                                settings.oauth_issuer)))
    app.add_middleware(BodySizeLimit, max_bytes=settings.agent_max_body_bytes)

    @app.exception_handler(AppError)
    async def app_error(_request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse(status_code=exc.http_status, content={"error": exc.to_dict()},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e["loc"] if p != "body") or "body",
                     "message": str(e["msg"]).removeprefix("Value error, ")} for e in exc.errors()]
        first = problems[0] if problems else {"field": "body", "message": "invalid request"}
        return JSONResponse(status_code=422, content={"error": {
            "code": "invalid_input", "message": first["message"], "field": first["field"],
            "fix": "correct the listed fields; the schema is at /docs", "details": problems}})

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        correlation = uuid.uuid4().hex[:12]
        log.error("unhandled error (correlation id %s)", correlation, exc_info=exc)
        return JSONResponse(status_code=500, content={"error": {
            "code": "internal_error", "message": f"internal error; correlation id {correlation}"}})

    @app.middleware("http")
    async def audit_calls(request: Request, call_next: Callable[[Request], Any]) -> Response:
        started = time.perf_counter()
        supplied = request.headers.get("x-correlation-id", "")
        # A caller's id joins our log to theirs; anything odd is replaced (it is stored and echoed).
        correlation = supplied if _CORRELATION.fullmatch(supplied) else uuid.uuid4().hex[:12]
        response: Response = await call_next(request)
        response.headers["X-Correlation-ID"] = correlation
        path = request.url.path
        if path.startswith("/v1/"):
            elapsed = time.perf_counter() - started
            route = request.scope.get("route")
            name = getattr(route, "path", path)
            metrics.TOOL_SECONDS.labels(channel="http", name=f"{request.method} {name}").observe(elapsed)
            with contextlib.suppress(Exception):
                rt = runtime()
                params = dict(request.query_params) | {"path": path}
                caller = getattr(request.state, "principal", None)
                who = caller.name if caller is not None else "anonymous"
                await anyio.to_thread.run_sync(lambda: audit.record(
                    rt.db, principal=who, channel="http", action=f"{request.method} {name}",
                    parameters=params, outcome=str(response.status_code), duration_ms=elapsed * 1000,
                    correlation_id=correlation))
        return response

    # Every read route needs tag:read. So does submitting a scan: it reads the cloud and writes only this
    # service's own database (nothing changes in the cloud), and scanning is what a reader is for.
    read = [Depends(require_scope(TAG_READ))]
    app.include_router(routes.scans_router, dependencies=read)
    app.include_router(routes.policy_router, dependencies=read)
    app.include_router(routes.resources_router, dependencies=read)
    app.include_router(routes.ops_router)  # /health stays open (load balancers, probes)
    app.include_router(history_router, dependencies=read)
    app.include_router(reports_router, dependencies=read)
    app.include_router(suggestions_router, dependencies=read)
    app.include_router(cost_router, dependencies=read)
    app.include_router(schedules_router, dependencies=read)
    app.include_router(exports_router, dependencies=read)
    # Authenticated; each tagging route declares its own scope (tag:read / tag:write / tag:approve).
    app.include_router(tagging_router, dependencies=[Depends(current_principal)])
    app.include_router(audit_router)  # admin
    app.include_router(apikeys_router)  # admin
    app.router.routes.extend(metadata_routes(gate))  # RFC 9728, open

    @app.get("/metrics", include_in_schema=False)
    def prometheus(rt: Annotated[Runtime, Depends(routes.get_runtime)]) -> Response:
        routes.refresh_db_gauges(rt)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/mcp", include_in_schema=False)
    @app.get("/mcp", include_in_schema=False)
    def mcp_slash() -> RedirectResponse:
        # Streamable HTTP lives at /mcp/; keep the POST body on redirect (307).
        return RedirectResponse("/mcp/", status_code=307)

    def mcp_refused(method: str, status: int) -> None:
        audit.record(runtime().db, principal="anonymous", channel="mcp", action=f"{method} /mcp/",
                     parameters={"path": "/mcp/"}, outcome=str(status))

    app.mount("/mcp", ApiKeyHeader(mcp_app, on_refused=mcp_refused if gate.enabled else None))
    return app

