"""``finops-tags apikey create|list|revoke|rotate``: API keys for service accounts.

The key text is printed once, on stdout (so it can be piped into a secret store); only a salted hash is
kept. Every change is audited (channel ``cli``). Gateways pick changes up within
FINOPS_API_KEY_CACHE_SECONDS, without a restart.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console

from services import audit
from services.auth import ALL_SCOPES, ApiKeyInfo, ApiKeyStore
from services.config import Settings
from services.db.engine import Database


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no user name in a bare container
        return "cli"


def register_apikey_commands(app: typer.Typer, *, handle_errors: Callable[[Any], Any],
                             settings: Callable[..., Settings], err: Console) -> None:
    """Add the ``apikey`` command group to ``app``."""
    apikey_app = typer.Typer(help="API keys for service accounts (stored hashed; rotate without restart).",
                             no_args_is_help=True)
    app.add_typer(apikey_app, name="apikey")

    def store() -> tuple[ApiKeyStore, Database]:
        from services.db.migrate import upgrade

        s = settings()
        upgrade(s.effective_database_url)
        db = Database(s.effective_database_url)
        pepper = s.api_key_pepper.get_secret_value() if s.api_key_pepper else ""
        return ApiKeyStore(db, pepper=pepper, cache_seconds=0), db

    def row(info: ApiKeyInfo) -> dict[str, Any]:
        return {**info.model_dump(mode="json"), "active": info.active}

    @apikey_app.command("create")
    @handle_errors
    def create(
        name: Annotated[str, typer.Argument(help="Service account name, e.g. ci-pipeline.")],
        scopes: Annotated[str, typer.Option("--scopes", help=f"Comma-separated: {', '.join(ALL_SCOPES)}.")
                          ] = "tag:read",
        expires_days: Annotated[float | None, typer.Option(help="Expire after this many days (default never).")] = None,
    ) -> None:
        """Create a key and print it once (stdout); keep it in a secret store."""
        keys, db = store()
        new = keys.create(name, scopes.split(","), created_by=_operator(), expires_days=expires_days)
        audit.record(db, principal=_operator(), channel="cli", action="apikey.create",
                     parameters={"name": name, "scopes": new.info.scopes, "key_id": new.info.id}, outcome="ok")
        err.print(f"created key {new.info.id} for {name} with scopes {', '.join(new.info.scopes)}; "
                  "it is shown once, store it now", highlight=False)
        typer.echo(new.key)

    @apikey_app.command("list")
    @handle_errors
    def list_keys(
        all_keys: Annotated[bool, typer.Option("--all", help="Also revoked and rotated keys.")] = False,
    ) -> None:
        """List keys as JSON (ids, names, scopes, dates; never secrets)."""
        keys, _ = store()
        typer.echo(json.dumps([row(i) for i in keys.list(include_revoked=all_keys)], indent=2))

    @apikey_app.command("revoke")
    @handle_errors
    def revoke(key_id: Annotated[str, typer.Argument(help="The key id (see `apikey list`).")]) -> None:
        """Revoke a key: refused by every gateway within FINOPS_API_KEY_CACHE_SECONDS."""
        keys, db = store()
        info = keys.revoke(key_id)
        audit.record(db, principal=_operator(), channel="cli", action="apikey.revoke",
                     parameters={"key_id": key_id, "name": info.name}, outcome="ok")
        err.print(f"revoked key {key_id} ({info.name})", highlight=False)

    @apikey_app.command("rotate")
    @handle_errors
    def rotate(key_id: Annotated[str, typer.Argument(help="The key id to replace.")]) -> None:
        """Replace a key with a new secret (same name and scopes); the old one stops working. Prints the new key."""
        keys, db = store()
        new = keys.rotate(key_id, created_by=_operator())
        audit.record(db, principal=_operator(), channel="cli", action="apikey.rotate",
                     parameters={"key_id": key_id, "new_key_id": new.info.id, "name": new.info.name}, outcome="ok")
        err.print(f"rotated {key_id} -> {new.info.id} ({new.info.name}); the old key is revoked", highlight=False)
        typer.echo(new.key)
