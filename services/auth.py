"""Access control: who is calling (``Principal``) and what they may do (scopes).

The gateway is an OAuth 2.1 resource server: JWT access tokens are verified against the issuer's JWKS
(fetched from ``FINOPS_OAUTH_JWKS_URL`` and cached, or configured inline), with issuer, audience and
expiry checked. Service accounts use API keys (``fta_<id>_<secret>``): only a salted SHA-256 of the
secret is stored, keys are read from the database with a short cache, so a rotation or revocation takes
effect within ``FINOPS_API_KEY_CACHE_SECONDS`` without a restart.

Scopes: ``tag:read`` (read and scan), ``tag:write`` (create tagging requests), ``tag:approve`` (decide
them), ``admin`` (audit log; implies every other scope).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from pydantic import BaseModel
from sqlalchemy import select

from services.config import Settings
from services.db.engine import Database
from services.db.models import ApiKeyRow
from services.errors import AppError, InvalidInput, NotFound

TAG_READ = "tag:read"
TAG_WRITE = "tag:write"
TAG_APPROVE = "tag:approve"
ADMIN = "admin"
ALL_SCOPES: tuple[str, ...] = (TAG_READ, TAG_WRITE, TAG_APPROVE, ADMIN)

API_KEY_PREFIX = "fta_"
_JWT_LEEWAY_SECONDS = 30  # clock skew between the issuer and this host


@dataclass(frozen=True)
class Principal:
    """The caller of one request or tool call. ``name`` goes into the audit log and into
    ``requested_by``/``decided_by`` fields: ``oauth:<sub>``, ``apikey:<name>``, ``local`` or ``anonymous``."""

    name: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    kind: str = "anonymous"  # oauth | apikey | local | anonymous

    def has(self, scope: str) -> bool:
        """Whether the principal may do what ``scope`` allows (``admin`` allows everything)."""
        return scope in self.scopes or ADMIN in self.scopes

    def require(self, scope: str) -> None:
        """Raise ``InsufficientScope`` (403) unless the principal holds ``scope`` (or ``admin``)."""
        if not self.has(scope):
            raise InsufficientScope(scope, self)


def anonymous_all_scopes() -> Principal:
    """The caller when authentication is off (embedded local mode): everything is allowed, as before."""
    return Principal("anonymous", frozenset(ALL_SCOPES), "anonymous")


class Unauthenticated(AppError):
    """No credentials, or credentials that do not verify. Answers 401 with a WWW-Authenticate challenge."""

    code = "unauthenticated"
    http_status = 401
    #: Response headers the HTTP edge adds (the WWW-Authenticate challenge).
    headers: dict[str, str] | None = None


class InsufficientScope(AppError):
    """A valid caller without the scope an operation needs. Answers 403 naming the scope."""

    code = "insufficient_scope"
    http_status = 403
    headers: dict[str, str] | None = None

    def __init__(self, scope: str, principal: Principal | None = None) -> None:
        who = principal.name if principal else "the caller"
        super().__init__(f"{who} lacks the scope {scope!r} this operation needs", field="scope",
                         fix=f"use a token or API key granted {scope!r} (ask an administrator)")
        self.scope = scope

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "scope": self.scope}


def parse_scopes(value: Any) -> frozenset[str]:
    """Scopes from a ``scope`` (space-separated string) or ``scp`` (list or string) claim."""
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list | tuple):
        return frozenset(str(v) for v in value)
    return frozenset()


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """Known scopes, de-duplicated in canonical order; an unknown one is an InvalidInput naming it."""
    wanted = {s.strip() for s in scopes if s.strip()}
    unknown = sorted(wanted - set(ALL_SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope(s): {', '.join(unknown)}", field="scopes",
                           fix=f"use only: {', '.join(ALL_SCOPES)}")
    if not wanted:
        raise InvalidInput("at least one scope is needed", field="scopes", fix=f"pick from: {', '.join(ALL_SCOPES)}")
    return [s for s in ALL_SCOPES if s in wanted]


class JwtVerifier:
    """Verifies JWT access tokens: signature against the issuer's keys, then ``iss``, ``aud``, ``exp``."""

    def __init__(self, *, issuer: str, audience: str, algorithms: list[str], jwks_url: str | None = None,
                 jwks: str | None = None, public_key: str | None = None, cache_seconds: float = 300) -> None:
        self.issuer = issuer
        self.audience = audience
        self.algorithms = algorithms
        self._client: jwt.PyJWKClient | None = None
        self._keys: dict[str | None, Any] = {}
        if jwks_url:
            # PyJWKClient caches the key set and refetches it when a token names an unknown kid (key rotation).
            self._client = jwt.PyJWKClient(jwks_url, cache_jwk_set=True, lifespan=max(1, int(cache_seconds)),
                                           timeout=10)
        elif jwks:
            for key in jwt.PyJWKSet.from_json(jwks).keys:
                self._keys[key.key_id] = key.key
        elif public_key:
            self._keys[None] = public_key
        else:
            raise InvalidInput("no key source for JWT verification", field="FINOPS_OAUTH_JWKS_URL",
                               fix="set FINOPS_OAUTH_JWKS_URL (or FINOPS_OAUTH_JWKS / FINOPS_OAUTH_PUBLIC_KEY)")

    def _key_for(self, token: str) -> Any:
        if self._client is not None:
            try:
                return self._client.get_signing_key_from_jwt(token).key
            except jwt.PyJWKClientConnectionError:
                raise Unauthenticated("the issuer's signing keys cannot be fetched right now", field="authorization",
                                      fix="retry later; the operator should check FINOPS_OAUTH_JWKS_URL") from None
        kid = jwt.get_unverified_header(token).get("kid")
        if kid in self._keys:
            return self._keys[kid]
        if len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise Unauthenticated("the token's signing key (kid) is not one of the issuer's keys", field="authorization",
                              fix="obtain a new token from the configured issuer")

    def verify(self, token: str) -> Principal:
        try:
            claims: dict[str, Any] = jwt.decode(
                token, self._key_for(token), algorithms=self.algorithms, audience=self.audience, issuer=self.issuer,
                leeway=_JWT_LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the access token has expired", field="authorization",
                                  fix="obtain a new token from the issuer") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the access token was issued for another audience", field="authorization",
                                  fix=f"request a token for the audience {self.audience!r}") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the access token comes from another issuer", field="authorization",
                                  fix=f"obtain a token from {self.issuer}") from None
        except jwt.PyJWTError as exc:
            # Signature, format, algorithm, missing claim: the reason is the library's class name only.
            raise Unauthenticated(f"the access token is not valid ({type(exc).__name__})", field="authorization",
                                  fix="obtain a new token from the configured issuer") from None
        scopes = parse_scopes(claims.get("scope")) | parse_scopes(claims.get("scp"))
        return Principal(f"oauth:{claims['sub']}", frozenset(scopes & set(ALL_SCOPES)), "oauth")


class ApiKeyInfo(BaseModel):
    """An API key as listed: never the secret or its hash."""

    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from: str | None

    @property
    def active(self) -> bool:
        now = datetime.now(UTC)
        return self.revoked_at is None and (self.expires_at is None or _aware(self.expires_at) > now)


class NewApiKey(BaseModel):
    """A created or rotated key: ``key`` is the only time the plaintext exists outside the caller."""

    key: str
    info: ApiKeyInfo


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _hash_secret(secret: str, salt: str, pepper: str) -> str:
    # The secret is 256 random bits, so a fast salted hash is enough (no dictionary to slow down); the
    # pepper (FINOPS_API_KEY_PEPPER) keeps a stolen table useless without the gateway's configuration.
    return hmac.new(pepper.encode(), f"{salt}:{secret}".encode(), hashlib.sha256).hexdigest()


def _info(row: ApiKeyRow) -> ApiKeyInfo:
    return ApiKeyInfo(id=row.id, name=row.name, scopes=list(row.scopes), created_at=row.created_at,
                      created_by=row.created_by, expires_at=row.expires_at, revoked_at=row.revoked_at,
                      rotated_from=row.rotated_from)


class ApiKeyStore:
    """API keys in the database, with a short read cache (rotation and revocation need no restart)."""

    def __init__(self, db: Database, *, pepper: str = "", cache_seconds: float = 5.0) -> None:
        self.db = db
        self.pepper = pepper
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, ApiKeyRow | None]] = {}
        self._lock = threading.Lock()

    def _new_row(self, name: str, scopes: list[str], *, created_by: str | None, expires_at: datetime | None,
                 rotated_from: str | None) -> tuple[ApiKeyRow, str]:
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        row = ApiKeyRow(id=key_id, name=name, scopes=scopes, salt=salt,
                        secret_hash=_hash_secret(secret, salt, self.pepper), created_by=created_by,
                        expires_at=expires_at, rotated_from=rotated_from, created_at=datetime.now(UTC))
        return row, f"{API_KEY_PREFIX}{key_id}_{secret}"

    def create(self, name: str, scopes: Iterable[str], *, created_by: str | None = None,
               expires_days: float | None = None) -> NewApiKey:
        name = name.strip()
        if not name or len(name) > 128:
            raise InvalidInput("a key name of 1 to 128 characters is needed", field="name",
                               fix="name the service account, e.g. ci-pipeline")
        expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
        row, key = self._new_row(name, validate_scopes(scopes), created_by=created_by, expires_at=expires,
                                 rotated_from=None)
        with self.db.session() as s:
            s.add(row)
        return NewApiKey(key=key, info=_info(row))

    def list(self, *, include_revoked: bool = False) -> list[ApiKeyInfo]:
        with self.db.session() as s:
            rows = s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at)).all()
            infos = [_info(r) for r in rows]
        return [i for i in infos if include_revoked or i.revoked_at is None]

    def _active_row(self, s: Any, key_id: str) -> ApiKeyRow:
        row: ApiKeyRow | None = s.get(ApiKeyRow, key_id)
        if row is None:
            raise NotFound(f"no API key with id {key_id!r}", field="key_id",
                           fix="see `finops-tags apikey list` for the ids")
        if row.revoked_at is not None:
            raise InvalidInput(f"API key {key_id!r} is already revoked", field="key_id",
                               fix="create a new key with `finops-tags apikey create`")
        return row

    def revoke(self, key_id: str) -> ApiKeyInfo:
        with self.db.session() as s:
            row = self._active_row(s, key_id)
            row.revoked_at = datetime.now(UTC)
            info = _info(row)
        self._forget(key_id)
        return info

    def rotate(self, key_id: str, *, created_by: str | None = None) -> NewApiKey:
        """A new secret with the same name, scopes and expiry; the old key stops working at once
        (on other gateway replicas within the cache delay)."""
        with self.db.session() as s:
            old = self._active_row(s, key_id)
            old.revoked_at = datetime.now(UTC)
            row, key = self._new_row(old.name, list(old.scopes), created_by=created_by, expires_at=old.expires_at,
                                     rotated_from=old.id)
            s.add(row)
            info = _info(row)
        self._forget(key_id)
        return NewApiKey(key=key, info=info)

    def _forget(self, key_id: str) -> None:
        with self._lock:
            self._cache.pop(key_id, None)

    def _lookup(self, key_id: str) -> ApiKeyRow | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        with self.db.session() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is not None:
                s.expunge(row)
        with self._lock:
            if len(self._cache) > 10_000:  # a flood of made-up ids must not grow memory without bound
                self._cache.clear()
            self._cache[key_id] = (now, row)
        return row

    def verify(self, key: str) -> Principal:
        body = key.removeprefix(API_KEY_PREFIX)
        key_id, sep, secret = body.partition("_")
        invalid = Unauthenticated("the API key is not valid (unknown, revoked, rotated or expired)",
                                  field="authorization", fix="use a current key (`finops-tags apikey list`)")
        if not sep or not key_id or not secret:
            raise invalid
        row = self._lookup(key_id)
        if row is None or not hmac.compare_digest(row.secret_hash, _hash_secret(secret, row.salt, self.pepper)):
            raise invalid
        now = datetime.now(UTC)
        if row.revoked_at is not None or (row.expires_at is not None and _aware(row.expires_at) <= now):
            raise invalid
        return Principal(f"apikey:{row.name}", frozenset(row.scopes), "apikey")


class Authenticator:
    """Turns a presented credential into a Principal, or raises Unauthenticated. One per process."""

    def __init__(self, settings: Settings, db: Database | None) -> None:
        self.settings = settings
        mode = settings.effective_auth_mode
        self.enabled = mode != "off"
        self.jwt: JwtVerifier | None = None
        self.keys: ApiKeyStore | None = None
        if mode in ("oauth", "both"):
            self.jwt = JwtVerifier(
                issuer=settings.oauth_issuer or "", audience=settings.oauth_audience or "",
                algorithms=settings.oauth_algorithms, jwks_url=settings.oauth_jwks_url,
                jwks=settings.oauth_jwks, public_key=settings.oauth_public_key,
                cache_seconds=settings.oauth_jwks_cache_seconds)
        if mode in ("apikey", "both") and db is not None:
            pepper = settings.api_key_pepper.get_secret_value() if settings.api_key_pepper else ""
            self.keys = ApiKeyStore(db, pepper=pepper, cache_seconds=settings.api_key_cache_seconds)

    def authenticate(self, credential: str | None) -> Principal:
        """Verify a bearer token or API key (``fta_...``)."""
        if not self.enabled:
            return anonymous_all_scopes()
        if not credential:
            raise Unauthenticated("authentication is required", field="authorization",
                                  fix="send 'Authorization: Bearer <access token or API key>' (or X-API-Key)")
        if credential.startswith(API_KEY_PREFIX):
            if self.keys is None:
                raise Unauthenticated("API keys are not accepted by this server", field="authorization",
                                      fix="use an OAuth access token")
            return self.keys.verify(credential)
        if self.jwt is None:
            raise Unauthenticated("only API keys (fta_...) are accepted by this server", field="authorization",
                                  fix="send an API key created with `finops-tags apikey create`")
        return self.jwt.verify(credential)


def credential_from_headers(authorization: str | None, api_key: str | None) -> str | None:
    """The credential of a request: ``Authorization: Bearer X`` or ``X-API-Key: X``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return api_key.strip() if api_key else None


def stdio_principal(settings: Settings) -> Principal:
    """The local user of ``finops-tags mcp`` (stdio): read-only unless FINOPS_STDIO_SCOPES says otherwise."""
    return Principal("local", frozenset(settings.stdio_scopes), "local")


def jwks_json(keys: list[dict[str, Any]]) -> str:
    """A JWKS document (for tests and static configuration)."""
    return json.dumps({"keys": keys})
