"""Production mode end to end: PostgreSQL, a Redis broker and a real `celery worker` process (prefork)
scanning a moto server over HTTP; the REST gateway reads the same rows."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from services import scans
from services.db.models import ScanResourceRow, ScanShardRow, ViolationRow
from services.schemas import ScanRequest
from tests.conftest import WorkerProcess
from tests.integration.conftest import expected_by_type, wait_scan

pytestmark = pytest.mark.integration


@pytest.fixture()
def production(tmp_path: Path, postgres_url: str, redis_url: str, aws_environment: Any) -> Iterator[dict[str, Any]]:
    from scanner.emulator.demo_estate import seed_small_estate
    from scanner.emulator.server import aws_env
    from services.config import Settings
    from services.db.engine import Database
    from services.db.migrate import upgrade
    from services.runtime import Runtime
    from workers.app import create_app
    from workers.dispatch import CeleryDispatcher

    estate = seed_small_estate(aws_environment.endpoint_url)
    env_vars = {"FINOPS_MODE": "production", "DATABASE_URL": postgres_url, "CELERY_BROKER_URL": redis_url,
                "FINOPS_HOME": str(tmp_path), **aws_env(aws_environment.endpoint_url)}
    settings = Settings(mode="production", database_url=postgres_url, celery_broker_url=redis_url, home=tmp_path,
                        aws_endpoint_url=aws_environment.endpoint_url)
    upgrade(postgres_url)
    worker = WorkerProcess({**os.environ, **env_vars}, concurrency=2, log_path=tmp_path / "worker.log")
    rt = Runtime(settings=settings, db=Database(postgres_url), dispatcher=CeleryDispatcher(create_app(settings)))
    try:
        yield {"rt": rt, "estate": estate, "worker": worker}
    finally:
        worker.stop()
        rt.db.dispose()


def test_scan_through_redis_and_a_celery_worker(production: dict[str, Any]) -> None:
    rt, estate, worker = production["rt"], production["estate"], production["worker"]
    request = ScanRequest(accounts=list(estate.member_account_ids), regions=list(estate.regions),
                          resource_types=sorted(estate.resource_types))
    scan_id = scans.submit(rt, request)
    try:
        result = wait_scan(rt, scan_id, timeout=180)
    except AssertionError:
        raise AssertionError("scan did not finish; worker log:\n" + worker.log_text()[-4000:]) from None

    assert result.status == "succeeded", result.data_quality
    expected = expected_by_type(estate, list(estate.member_account_ids))
    assert {k: v.total for k, v in result.breakdowns.by_resource_type.items()} == expected
    assert "scan.shard" in worker.log_text()  # the separate worker process did the work
    # The worker lowered its CPU priority before forking (FINOPS_WORKER_NICE, default 10): its pool too.
    pool = [int(p.name) for p in Path("/proc").iterdir()
            if p.name.isdigit() and _parent_of(int(p.name)) == worker.proc.pid]
    assert pool and {os.getpriority(os.PRIO_PROCESS, pid) for pid in [worker.proc.pid, *pool]} == {10}

    # The gateway serves the same rows (one code path).
    from api.http.app import create_app
    from services.auth import ApiKeyStore

    # Production mode turns auth on: the gateway answers a service account's API key, and nobody else.
    key = ApiKeyStore(rt.db).create("pipeline-test", ["tag:read"]).key
    with TestClient(create_app(lambda: rt, settings=rt.settings), headers={"X-API-Key": key}) as client:
        assert client.get(f"/v1/scans/{scan_id}", headers={"X-API-Key": ""}).status_code == 401
        body = client.get(f"/v1/scans/{scan_id}").json()
        assert body["compliance_score"] == result.compliance_score
        assert body["data_quality"]["status"] == "complete"
        page = client.get(f"/v1/scans/{scan_id}/violations", params={"limit": 5}).json()
        assert len(page["violations"]) == 5 and page["next_cursor"]
        health = client.get("/health").json()
        assert health["database"]["backend"] == "postgresql" and health["broker"]["status"] == "ok"

    # Redelivery through the broker: the shard runs again in the worker and leaves one copy of each row.
    with rt.db.session() as s:
        before = (s.scalar(select(func.count()).select_from(ScanResourceRow).where(ScanResourceRow.scan_id == scan_id)),
                  s.scalar(select(func.count()).select_from(ViolationRow).where(ViolationRow.scan_id == scan_id)))
        shard_id = s.scalars(select(ScanShardRow.id).where(ScanShardRow.scan_id == scan_id,
                                                            ScanShardRow.resources_found > 0)).first()
        attempts = s.get(ScanShardRow, shard_id).attempts
        s.execute(update(ScanShardRow).where(ScanShardRow.id == shard_id).values(status="running"))
    rt.dispatcher.run_shard(shard_id, interactive=True)
    deadline = time.monotonic() + 60
    while True:
        with rt.db.session() as s:
            shard = s.get(ScanShardRow, shard_id)
            if shard.status == "succeeded" and shard.attempts == attempts + 1:
                break
        assert time.monotonic() < deadline, "redelivered shard was not processed"
        time.sleep(0.2)
    with rt.db.session() as s:
        after = (s.scalar(select(func.count()).select_from(ScanResourceRow).where(ScanResourceRow.scan_id == scan_id)),
                 s.scalar(select(func.count()).select_from(ViolationRow).where(ViolationRow.scan_id == scan_id)))
    assert after == before


def _parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):  # the process ended meanwhile
        return None


def test_production_mode_refuses_embedded_defaults() -> None:
    from services.config import Settings

    with pytest.raises(ValueError, match="DATABASE_URL must point at PostgreSQL"):
        Settings(mode="production", database_url=None, celery_broker_url="redis://127.0.0.1:6379/0")
    with pytest.raises(ValueError, match="CELERY_BROKER_URL"):
        Settings(mode="production", database_url="postgresql+psycopg://x@127.0.0.1/x", celery_broker_url=None)


def test_interactive_scans_go_ahead_of_scheduled_ones(tmp_path: Path, postgres_url: str, redis_url: str,
                                                      aws_environment: Any) -> None:
    """A scheduled scan queued first and an interactive one queued after: one worker slot takes every
    interactive shard before the scheduled scan's (Redis priorities, 0 before 6)."""
    from scanner.emulator.demo_estate import seed_small_estate
    from scanner.emulator.server import aws_env
    from services.config import Settings
    from services.db.engine import Database
    from services.db.migrate import upgrade
    from services.runtime import Runtime
    from workers.app import create_app
    from workers.dispatch import CeleryDispatcher

    estate = seed_small_estate(aws_environment.endpoint_url)
    env_vars = {"FINOPS_MODE": "production", "DATABASE_URL": postgres_url, "CELERY_BROKER_URL": redis_url,
                "FINOPS_HOME": str(tmp_path), "FINOPS_AUTH_DISABLED_I_KNOW": "true", "FINOPS_AUTH_MODE": "off",
                **aws_env(aws_environment.endpoint_url)}
    settings = Settings(mode="production", database_url=postgres_url, celery_broker_url=redis_url, home=tmp_path,
                        aws_endpoint_url=aws_environment.endpoint_url)
    upgrade(postgres_url)
    rt = Runtime(settings=settings, db=Database(postgres_url), dispatcher=CeleryDispatcher(create_app(settings)))
    scope = {"accounts": list(estate.member_account_ids), "regions": list(estate.regions),
             "resource_types": sorted(estate.resource_types)}
    scheduled = scans.submit(rt, ScanRequest(trigger="scheduled", **scope), requested_by="beat")
    interactive = scans.submit(rt, ScanRequest(**scope))
    # Both wait in Redis before any worker runs: the order is the broker's, not the submission's.
    worker = WorkerProcess({**os.environ, **env_vars}, concurrency=1, log_path=tmp_path / "worker.log")
    try:
        for scan_id in (interactive, scheduled):
            try:
                assert wait_scan(rt, scan_id, timeout=120).status == "succeeded"
            except AssertionError:
                raise AssertionError("worker log:\n" + worker.log_text()[-4000:]) from None
        with rt.db.session() as s:
            starts = {scan_id: sorted(s.scalars(select(ScanShardRow.started_at)
                                                .where(ScanShardRow.scan_id == scan_id)))
                      for scan_id in (interactive, scheduled)}
        assert len(starts[interactive]) > 5
        assert starts[interactive][-1] < starts[scheduled][0], "a scheduled shard ran before interactive ones"
    finally:
        worker.stop()
        rt.db.dispose()
