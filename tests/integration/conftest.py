"""Integration fixtures: an embedded-mode Runtime (SQLite + in-process Celery worker) per test,
sharing one embedded worker thread for the whole session."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.schemas import TERMINAL_STATUSES, ScanResult


@pytest.fixture(scope="session")
def embedded_worker() -> Iterator[Any]:
    from workers.app import app
    from workers.embedded import EmbeddedWorker

    worker = EmbeddedWorker(app, concurrency=4).start()
    try:
        yield worker
    finally:
        worker.stop()


@pytest.fixture()
def aws_environment(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """boto3 in this process talks to the emulator with fake keys."""
    from scanner.emulator.server import aws_env

    for key, value in aws_env(emulator.endpoint_url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    emulator.reset()
    return emulator


@pytest.fixture()
def embedded_runtime(tmp_path: Path, aws_environment: Any, embedded_worker: Any) -> Iterator[Any]:
    """A Runtime on a fresh SQLite file whose tasks run on the session's embedded worker."""
    from services.config import Settings
    from services.db.engine import Database
    from services.db.migrate import upgrade
    from services.runtime import Runtime
    from workers.app import app
    from workers.dispatch import CeleryDispatcher
    from workers.runtime import use_runtime

    # The shipped policy governs unless a test opts into organization policies (policy_source).
    settings = Settings(home=tmp_path, aws_endpoint_url=aws_environment.endpoint_url, policy_source="file")
    upgrade(settings.effective_database_url)
    rt = Runtime(settings=settings, db=Database(settings.effective_database_url), dispatcher=CeleryDispatcher(app))
    use_runtime(rt)
    try:
        yield rt
    finally:
        rt.db.dispose()


def wait_scan(rt: Any, scan_id: str, timeout: float = 120.0) -> ScanResult:
    from services import scans

    deadline = time.monotonic() + timeout
    while True:
        result = scans.get_scan(rt, scan_id, violations_limit=0)
        if result.status in TERMINAL_STATUSES:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"scan {scan_id} still {result.status} after {timeout} s: {result.progress}")
        time.sleep(0.2)


def expected_by_type(estate: Any, accounts: list[str], types: set[str] | None = None) -> dict[str, int]:
    out: dict[str, int] = {}
    for (account, _region, rtype), n in estate.counts.items():
        if account in accounts and (types is None or rtype in types) and n:
            out[rtype] = out.get(rtype, 0) + n
    return out


os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
