"""scans.reconcile, which every status read runs: it fails shards a dead worker or a lost retry left behind
and finalizes a scan whose shards are all done, on SQLite and on PostgreSQL (it selects them in SQL)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from services import scans
from services.config import Settings
from services.db.engine import Database
from services.db.migrate import upgrade
from services.db.models import ScanRow, ScanShardRow, utcnow
from services.runtime import Runtime
from services.schemas import ScanRequest

pytestmark = pytest.mark.integration

HARD_LIMIT_S = 300


class RecordingDispatcher:
    def __init__(self) -> None:
        self.finalized: list[str] = []

    def plan_scan(self, scan_id: str, *, interactive: bool) -> None:
        pass

    def run_shard(self, shard_id: str, *, interactive: bool, countdown: float = 0.0) -> None:
        pass

    def finalize_scan(self, scan_id: str) -> None:
        self.finalized.append(scan_id)


@pytest.fixture(params=["sqlite", "postgresql"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'finops.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    rt = Runtime(settings=Settings(database_url=url, shard_hard_time_limit=HARD_LIMIT_S, policy_source="file"),
                 db=Database(url), dispatcher=RecordingDispatcher())
    try:
        yield rt
    finally:
        rt.db.dispose()


def _running_scan(rt: Runtime, shards: dict[str, dict[str, Any]]) -> str:
    scan_id = scans.submit(rt, ScanRequest(accounts=["111111111111"], regions=["us-east-1"]))
    with rt.db.session() as s:
        s.get(ScanRow, scan_id).status = "running"  # type: ignore[union-attr]
        for name, fields in shards.items():
            s.add(ScanShardRow(id=f"{scan_id}/{name}", scan_id=scan_id, account_id="111111111111",
                               region="us-east-1", group=name, resource_types=["aws:sqs:queue"], failures=[],
                               notes=[], **fields))
    return scan_id


def _shard_states(rt: Runtime, scan_id: str) -> dict[str, tuple[str, str | None]]:
    with rt.db.session() as s:
        return {sh.group: (sh.status, sh.error) for sh in scans._shards(s, scan_id)}


def test_reconcile_fails_only_the_abandoned_shards_and_waits_for_the_rest(runtime: Runtime) -> None:
    long_ago = utcnow() - timedelta(seconds=HARD_LIMIT_S + 120)
    recently = utcnow() - timedelta(seconds=5)
    scan_id = _running_scan(runtime, {
        "dead-worker": {"status": "running", "attempts": 1, "started_at": long_ago},
        "still-running": {"status": "running", "attempts": 1, "started_at": recently},
        "lost-retry": {"status": "queued", "attempts": 1, "started_at": long_ago},
        "never-started": {"status": "queued", "attempts": 0},
        "done": {"status": "succeeded", "attempts": 1, "started_at": long_ago, "finished_at": recently},
    })
    scans.reconcile(runtime, scan_id)
    states = _shard_states(runtime, scan_id)
    assert states["dead-worker"] == ("failed", "the shard ran past its time limit or its worker died")
    assert states["lost-retry"] == ("failed", "the shard was due for a retry that never ran")
    assert states["still-running"] == ("running", None)
    assert states["never-started"] == ("queued", None)
    assert states["done"] == ("succeeded", None)
    assert scans.get_scan(runtime, scan_id, violations_limit=0).status == "running"  # two shards not done


def test_reconcile_finalizes_a_scan_whose_shards_all_ended(runtime: Runtime) -> None:
    long_ago = utcnow() - timedelta(seconds=HARD_LIMIT_S + 120)
    scan_id = _running_scan(runtime, {
        "done": {"status": "succeeded", "attempts": 1, "started_at": long_ago, "finished_at": long_ago},
        "dead-worker": {"status": "running", "attempts": 1, "started_at": long_ago},
    })
    result = scans.get_scan(runtime, scan_id, violations_limit=0)  # reconcile fails one, then finalizes
    assert result.status == "partial"
    assert result.progress.shards_done == 2 and result.progress.shards_failed == 1


def test_probe_counts_shards_and_finalizes_once_all_ended(runtime: Runtime) -> None:
    """The light probe a waiter asks several times a second: counts, and the finalize a lost message skipped."""
    recently = utcnow() - timedelta(seconds=5)
    scan_id = _running_scan(runtime, {
        "done": {"status": "succeeded", "attempts": 1, "started_at": recently, "finished_at": recently,
                 "resources_found": 7},
        "busy": {"status": "running", "attempts": 1, "started_at": recently},
    })
    seen = scans.probe(runtime, scan_id)
    assert (seen.status, seen.shards_done, seen.shards_total, seen.resources_found) == ("running", 1, 2, 7)
    with runtime.db.session() as s:
        shard = s.get(ScanShardRow, f"{scan_id}/busy")
        shard.status, shard.finished_at = "failed", utcnow()  # type: ignore[union-attr]
    seen = scans.probe(runtime, scan_id)
    assert (seen.status, seen.shards_done) == ("partial", 2)
    assert scans.get_scan(runtime, scan_id, violations_limit=0).data_quality.failed_shards[0].shard == "busy"


def test_wait_for_scan_repairs_stale_shards_and_stops_at_its_timeout(runtime: Runtime,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import anyio

    from services import scan_waiting

    long_ago = utcnow() - timedelta(seconds=HARD_LIMIT_S + 120)
    recently = utcnow() - timedelta(seconds=5)
    busy = _running_scan(runtime, {"busy": {"status": "running", "attempts": 1, "started_at": recently}})
    started = time.monotonic()
    seen = anyio.run(lambda: scan_waiting.wait_for_scan(runtime, busy, 0.6, interval_s=0.05))
    assert seen.status == "running" and 0.5 <= time.monotonic() - started < 5

    # A dead worker's shard is only found by reconcile, which the wait runs every REPAIR_INTERVAL_S.
    monkeypatch.setattr(scan_waiting, "REPAIR_INTERVAL_S", 0.1)
    dead = _running_scan(runtime, {"dead-worker": {"status": "running", "attempts": 1, "started_at": long_ago}})
    probes: list[scans.ScanProbe] = []

    async def record(p: scans.ScanProbe) -> None:
        probes.append(p)

    seen = anyio.run(lambda: scan_waiting.wait_for_scan(runtime, dead, 20, on_progress=record, interval_s=0.05))
    assert seen.status == "failed" and probes[-1] == seen and probes[0].status == "running"
