"""REST: service-account API keys (``/v1/api-keys``), for administrators (scope ``admin``).

The same operations as ``finops-tags apikey`` over HTTP: create (the key text is in that one answer and never
again), list (never the secret or its hash), rotate (a new secret, same name and scopes; the old key stops
working) and revoke. Every change is audited with the key id, never the key. The gateway's own key store is
used when it has one, so a rotation or revocation takes effect on this replica at once (others within
FINOPS_API_KEY_CACHE_SECONDS).
"""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.http.auth import gateway_auth, require_scope
from api.http.routes import RuntimeDep
from services import audit
from services.auth import ADMIN, ALL_SCOPES, ApiKeyInfo, ApiKeyStore, NewApiKey, Principal
from services.runtime import Runtime

apikeys_router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"])
AdminDep = Annotated[Principal, Depends(require_scope(ADMIN))]
KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="The key id (the part after fta_ in the key).")]


class ApiKeyCreate(BaseModel):
    """A new key for a service account."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="Service account name, e.g. ci-pipeline.")
    scopes: list[str] = Field(min_length=1, max_length=len(ALL_SCOPES),
                              description=f"Scopes granted: any of {', '.join(ALL_SCOPES)}.")
    expires_days: float | None = Field(default=None, gt=0, le=3650,
                                       description="Expire after this many days (omit: never).")


class ApiKeyListed(ApiKeyInfo):
    """An API key as listed (never its secret or hash), with whether it is usable now."""

    is_active: bool = Field(description="Not revoked and not expired.")


def _store(request: Request, rt: Runtime) -> ApiKeyStore:
    keys = gateway_auth(request).authenticator.keys if gateway_auth(request).enabled else None
    if keys is not None:
        return keys
    # Auth off or OAuth only: keys can still be prepared (e.g. before switching FINOPS_AUTH_MODE to both).
    pepper = rt.settings.api_key_pepper.get_secret_value() if rt.settings.api_key_pepper else ""
    return ApiKeyStore(rt.db, pepper=pepper, cache_seconds=0)


def _audit(rt: Runtime, who: Principal, action: str, parameters: dict[str, object]) -> None:
    audit.record(rt.db, principal=who.name, channel="http", action=action, parameters=parameters, outcome="ok")


@apikeys_router.post("", status_code=201, response_model=NewApiKey)
async def create_key(rt: RuntimeDep, request: Request, who: AdminDep, body: ApiKeyCreate) -> NewApiKey:
    """Create a key. ``key`` is shown in this answer only: store it in a secret store now."""
    store = _store(request, rt)

    def run() -> NewApiKey:
        new = store.create(body.name, body.scopes, created_by=who.name, expires_days=body.expires_days)
        _audit(rt, who, "apikey.create", {"name": new.info.name, "scopes": new.info.scopes, "key_id": new.info.id})
        return new

    return await anyio.to_thread.run_sync(run)


@apikeys_router.get("", response_model=list[ApiKeyListed])
async def list_keys(rt: RuntimeDep, request: Request, _who: AdminDep,
                    include_revoked: Annotated[bool, Query(description="Also revoked and rotated keys.")] = False,
                    ) -> list[ApiKeyListed]:
    """Keys with ids, names, scopes and dates; never a secret or a hash."""
    store = _store(request, rt)
    infos = await anyio.to_thread.run_sync(lambda: store.list(include_revoked=include_revoked))
    return [ApiKeyListed(**i.model_dump(), is_active=i.active) for i in infos]


@apikeys_router.post("/{key_id}/rotate", status_code=201, response_model=NewApiKey)
async def rotate_key(rt: RuntimeDep, request: Request, who: AdminDep, key_id: KeyId) -> NewApiKey:
    """Replace a key with a new secret (same name, scopes and expiry); the old key stops working. The new
    ``key`` is shown in this answer only."""
    store = _store(request, rt)

    def run() -> NewApiKey:
        new = store.rotate(key_id, created_by=who.name)
        _audit(rt, who, "apikey.rotate", {"key_id": key_id, "new_key_id": new.info.id, "name": new.info.name})
        return new

    return await anyio.to_thread.run_sync(run)


@apikeys_router.delete("/{key_id}", response_model=ApiKeyListed)
async def revoke_key(rt: RuntimeDep, request: Request, who: AdminDep, key_id: KeyId) -> ApiKeyListed:
    """Revoke a key: refused at once here, by other gateway replicas within FINOPS_API_KEY_CACHE_SECONDS."""
    store = _store(request, rt)

    def run() -> ApiKeyListed:
        info = store.revoke(key_id)
        _audit(rt, who, "apikey.revoke", {"key_id": key_id, "name": info.name})
        return ApiKeyListed(**info.model_dump(), is_active=info.active)

    return await anyio.to_thread.run_sync(run)
