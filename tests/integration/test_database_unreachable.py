"""A database that cannot be reached: a clear 503 / exit 1 naming the fix, never a stack trace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import free_port

pytestmark = pytest.mark.integration


def _dead_url() -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"


def test_http_answers_503_and_recovers_nothing_half_written(tmp_path: Path) -> None:
    from api.http.app import create_app
    from services.config import Settings
    from services.db.engine import Database
    from services.runtime import Runtime
    from workers.app import app
    from workers.dispatch import CeleryDispatcher

    url = _dead_url()
    settings = Settings(home=tmp_path, database_url=url)
    rt = Runtime(settings=settings, db=Database(url), dispatcher=CeleryDispatcher(app))
    with TestClient(create_app(lambda: rt)) as client:
        for response in (client.get("/v1/scans"), client.post("/v1/scans", json={}),
                         client.get("/v1/scans/0b8f1f62-5c1e-4a43-8d7e-3e2f0f7c9a10")):
            assert response.status_code == 503, response.text
            error = response.json()["error"]
            assert error["code"] == "unavailable" and "DATABASE_URL" in error["fix"]
            assert "Traceback" not in response.text and "psycopg" not in response.text
        health = client.get("/health")
        assert health.status_code == 503 and health.json()["database"]["status"] == "unavailable"


def test_cli_exits_1_with_the_fix(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FINOPS_", "DATABASE_URL", "CELERY_"))}
    env.update(FINOPS_HOME=str(tmp_path), DATABASE_URL=_dead_url())
    cli = str(Path(sys.executable).parent / "finops-tags")
    proc = subprocess.run([cli, "scan"], env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr
    assert "database cannot be reached" in proc.stderr and "DATABASE_URL" in proc.stderr
    assert "Traceback" not in proc.stderr
