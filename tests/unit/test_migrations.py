"""The Alembic migrations build exactly the schema the models describe (a model change without a
migration fails here), and upgrading twice is harmless."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from services.db.migrate import upgrade
from services.db.models import Base


def test_migrations_match_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.sqlite'}"
    upgrade(url)
    upgrade(url)  # idempotent: already at head
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ; add a migration: {diff}"
    tables = set(inspect(engine).get_table_names())
    assert {"scans", "scan_shards", "scan_resources", "resources", "violations", "policies", "audit_log"} <= tables
