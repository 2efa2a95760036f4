"""Access control without a server: JWT verification (issuer, audience, expiry, signature, scopes), API
key hashing/rotation/revocation, production settings refusing auth off, audit redaction, and the audit
log having no update or delete path."""

from __future__ import annotations

import ast
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from services import audit
from services.auth import (
    ALL_SCOPES,
    ApiKeyStore,
    Authenticator,
    InsufficientScope,
    JwtVerifier,
    Principal,
    Unauthenticated,
    credential_from_headers,
    stdio_principal,
)
from services.config import Settings
from services.db.engine import Database
from services.db.migrate import upgrade
from services.db.models import ApiKeyRow

ISSUER = "https://issuer.example.test"
AUDIENCE = "finops-api"
ROOT = Path(__file__).resolve().parents[2]


def _keypair() -> tuple[Any, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", use="sig", alg="RS256")
    return key, json.dumps({"keys": [jwk]})


KEY, JWKS = _keypair()
OTHER_KEY, _ = _keypair()


def token(key: Any = KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600, "scope": "tag:read"}
    body.update(claims)
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="RS256",
                      headers={"kid": "k1"})


@pytest.fixture()
def verifier() -> JwtVerifier:
    return JwtVerifier(issuer=ISSUER, audience=AUDIENCE, algorithms=["RS256"], jwks=JWKS)


def test_valid_token_gives_principal_with_scopes(verifier: JwtVerifier) -> None:
    p = verifier.verify(token(scope="tag:read tag:write unknown:scope"))
    assert p == Principal("oauth:alice", frozenset({"tag:read", "tag:write"}), "oauth")
    assert verifier.verify(token(scope=None, scp=["admin"])).scopes == {"admin"}


@pytest.mark.parametrize(("claims", "words"), [
    ({"aud": "someone-else"}, "audience"),
    ({"iss": "https://evil.example.test"}, "issuer"),
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"exp": None}, "not valid"),
    ({"sub": None}, "not valid"),
])
def test_bad_claims_are_refused(verifier: JwtVerifier, claims: dict[str, Any], words: str) -> None:
    with pytest.raises(Unauthenticated) as info:
        verifier.verify(token(**claims))
    assert words in str(info.value) and info.value.http_status == 401


def test_tampered_or_foreign_signature_is_refused(verifier: JwtVerifier) -> None:
    good = token()
    header, _payload, signature = good.split(".")
    forged_payload = jwt.utils.base64url_encode(json.dumps(
        {**jwt.decode(good, options={"verify_signature": False}), "scope": "admin"}).encode()).decode()
    for bad in (f"{header}.{forged_payload}.{signature}", token(OTHER_KEY), "not-a-jwt"):
        with pytest.raises(Unauthenticated):
            verifier.verify(bad)
    none_alg = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}, None,
                          algorithm="none")
    with pytest.raises(Unauthenticated):
        verifier.verify(none_alg)


def test_principal_require_names_the_scope() -> None:
    with pytest.raises(InsufficientScope) as info:
        Principal("apikey:ci", frozenset({"tag:read"})).require("tag:approve")
    body = info.value.to_dict()
    assert body["code"] == "insufficient_scope" and body["scope"] == "tag:approve"
    assert info.value.http_status == 403


def test_credential_headers() -> None:
    assert credential_from_headers("Bearer abc", None) == "abc"
    assert credential_from_headers("bearer  abc ", "zzz") == "abc"
    assert credential_from_headers(None, "fta_x_y") == "fta_x_y"
    assert credential_from_headers("Basic dXNlcjpwYXNz", None) is None


@pytest.fixture()
def db(tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'k.sqlite'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


def test_api_keys_hashed_rotated_revoked(db: Database) -> None:
    store = ApiKeyStore(db, pepper="pep", cache_seconds=0)
    new = store.create("ci", ["tag:read", "admin"], created_by="test")
    assert new.key.startswith("fta_") and new.info.scopes == ["tag:read", "admin"]
    with db.session() as s:
        row = s.get(ApiKeyRow, new.info.id)
        stored = json.dumps([row.salt, row.secret_hash, row.name, row.scopes, row.id])
    secret = new.key.split("_", 2)[2]
    assert secret not in stored and new.key not in stored  # only a salted hash is kept
    assert store.verify(new.key) == Principal("apikey:ci", frozenset({"tag:read", "admin"}), "apikey")
    with pytest.raises(Unauthenticated):
        store.verify(new.key[:-1] + ("A" if new.key[-1] != "A" else "B"))
    with pytest.raises(Unauthenticated):
        ApiKeyStore(db, pepper="another", cache_seconds=0).verify(new.key)  # the pepper matters

    rotated = store.rotate(new.info.id)
    assert rotated.info.rotated_from == new.info.id and rotated.info.scopes == new.info.scopes
    with pytest.raises(Unauthenticated):
        store.verify(new.key)
    assert store.verify(rotated.key).name == "apikey:ci"
    store.revoke(rotated.info.id)
    with pytest.raises(Unauthenticated):
        store.verify(rotated.key)
    assert store.list() == [] and len(store.list(include_revoked=True)) == 2


def test_api_key_cache_lets_other_replicas_notice_rotation(db: Database) -> None:
    admin_side = ApiKeyStore(db, cache_seconds=0)
    gateway = ApiKeyStore(db, cache_seconds=0.3)  # another process: its cache is not told
    new = admin_side.create("svc", ["tag:read"])
    assert gateway.verify(new.key).name == "apikey:svc"
    admin_side.revoke(new.info.id)
    deadline = time.monotonic() + 5
    while True:
        try:
            gateway.verify(new.key)
        except Unauthenticated:
            break
        assert time.monotonic() < deadline, "revocation not seen after the cache delay"
        time.sleep(0.05)


def test_unknown_scopes_and_names_are_rejected(db: Database) -> None:
    from services.errors import InvalidInput

    store = ApiKeyStore(db)
    with pytest.raises(InvalidInput, match="tag:delete"):
        store.create("x", ["tag:delete"])
    with pytest.raises(InvalidInput, match="name"):
        store.create("  ", ["tag:read"])


PROD = {"mode": "production", "database_url": "postgresql+psycopg://u@127.0.0.1/db",
        "celery_broker_url": "redis://127.0.0.1:6379/0"}


def test_production_refuses_auth_off_unless_forced() -> None:
    with pytest.raises(ValueError, match="FINOPS_AUTH_DISABLED_I_KNOW"):
        Settings(**PROD, auth_mode="off")
    assert Settings(**PROD, auth_mode="off", auth_disabled_i_know=True).effective_auth_mode == "off"
    assert Settings(**PROD).effective_auth_mode == "apikey"  # on by default
    assert Settings().effective_auth_mode == "off"  # embedded local mode stays open
    with pytest.raises(ValueError, match="FINOPS_OAUTH_ISSUER"):
        Settings(**PROD, auth_mode="oauth")
    ok = Settings(**PROD, oauth_issuer=ISSUER, oauth_audience=AUDIENCE, oauth_jwks=JWKS)
    assert ok.effective_auth_mode == "both"


def test_production_env_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FINOPS_MODE", "production")
    monkeypatch.setenv("DATABASE_URL", PROD["database_url"])
    monkeypatch.setenv("CELERY_BROKER_URL", PROD["celery_broker_url"])
    monkeypatch.setenv("FINOPS_AUTH_MODE", "off")
    with pytest.raises(ValueError, match="leaves the API open"):
        Settings()
    monkeypatch.setenv("FINOPS_AUTH_DISABLED_I_KNOW", "true")
    assert Settings().effective_auth_mode == "off"


def test_stdio_is_read_only_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    assert stdio_principal(Settings()).scopes == {"tag:read"}
    monkeypatch.setenv("FINOPS_STDIO_SCOPES", "tag:read,tag:write")
    assert stdio_principal(Settings()).scopes == {"tag:read", "tag:write"}
    monkeypatch.setenv("FINOPS_STDIO_SCOPES", "tag:everything")
    with pytest.raises(ValueError, match="FINOPS_STDIO_SCOPES"):
        Settings()


def test_authenticator_modes(db: Database) -> None:
    off = Authenticator(Settings(), db)
    assert off.authenticate(None).scopes == set(ALL_SCOPES)
    keys_only = Authenticator(Settings(auth_mode="apikey"), db)
    with pytest.raises(Unauthenticated, match="authentication is required"):
        keys_only.authenticate(None)
    with pytest.raises(Unauthenticated, match="only API keys"):
        keys_only.authenticate(token())
    both = Authenticator(Settings(auth_mode="both", oauth_issuer=ISSUER, oauth_audience=AUDIENCE, oauth_jwks=JWKS), db)
    assert both.authenticate(token()).name == "oauth:alice"


def test_redaction_of_secrets_and_webhook_paths() -> None:
    stored = audit.redact({
        "password": "p", "api_key": "k", "headers": {"Authorization": "Bearer abc"},
        "recipients": ["ops@example.com", "https://hooks.slack.com/services/T000/B000/XXXXSECRET"],
        "note": "use fta_0123456789abcdef_secretpart please", "jwt": "x",
        "text": "token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl here",
    })
    flat = json.dumps(stored)
    for secret in ("XXXXSECRET", "secretpart", "c2lnbmF0dXJl", "abc", '"p"', '"k"'):
        assert secret not in flat, secret
    assert "ops@example.com" in flat and "https://hooks.slack.com/[redacted]" in flat


def test_application_never_updates_or_deletes_audit_rows() -> None:
    """No code path changes or removes audit rows: no update()/delete() on AuditRow, no session.delete of one,
    and no assignment to an AuditRow attribute after insert, anywhere in the application packages."""
    offenders = []
    for package in ("api", "services", "workers", "scanner", "policies"):
        for path in (ROOT / package).rglob("*.py"):
            source = path.read_text()
            if "AuditRow" not in source and "audit_log" not in source:
                continue
            tree = ast.parse(source)
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                        "update", "delete") and any(isinstance(a, ast.Name) and a.id == "AuditRow" for a in node.args):
                    offenders.append(f"{path}:{node.lineno}")
            lowered = source.lower()
            for statement in ("update audit_log", "delete from audit_log", "truncate audit_log"):
                if statement in lowered:
                    offenders.append(f"{path}: {statement}")
    assert offenders == []
    public = [name for name in dir(audit) if not name.startswith("_")]
    assert not [n for n in public if any(w in n.lower() for w in ("update", "delete", "purge", "edit", "remove"))]


def test_admin_implies_every_scope_and_stdio_caller_is_local() -> None:
    from api.mcp.auth import caller, require

    admin = Principal("oauth:root", frozenset({"admin"}))
    assert all(admin.has(s) for s in ALL_SCOPES)
    local = stdio_principal(Settings())
    assert caller(local) is local  # no verified token in context: the stdio user
    assert require(local, "tag:read") is local
    with pytest.raises(InsufficientScope, match="tag:write"):
        require(local, "tag:write")  # read-only by default
