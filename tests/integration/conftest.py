"""Integration fixtures: an embedded-mode Runtime (SQLite + in-process Celery worker) per test,
sharing one embedded worker thread for the whole session."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def module_runtime(emulator: Any, home: Path) -> Iterator[Any]:
    """An embedded-mode Runtime for a whole test module (module fixtures cannot use ``embedded_runtime``):
    boto3 pointed at a freshly reset emulator, a new SQLite file, tasks on the session's embedded worker."""
    from scanner.emulator.server import aws_env
    from services.config import Settings
    from services.db.engine import Database
    from services.db.migrate import upgrade
    from services.runtime import Runtime
    from workers.app import app
    from workers.dispatch import CeleryDispatcher
    from workers.runtime import use_runtime

    with pytest.MonkeyPatch.context() as mp:
        for key, value in aws_env(emulator.endpoint_url).items():
            mp.setenv(key, value)
        emulator.reset()
        settings = Settings(home=home, aws_endpoint_url=emulator.endpoint_url, policy_source="file")
        upgrade(settings.effective_database_url)
        rt = Runtime(settings=settings, db=Database(settings.effective_database_url),
                     dispatcher=CeleryDispatcher(app))
        use_runtime(rt)
        try:
            yield rt
        finally:
            rt.db.dispose()


def member_volume(endpoint: str, account_id: str, region: str, tags: dict[str, str], *, session_name: str) -> str:
    """Create an EBS volume with ``tags`` in a member account of the demo organization; returns its ARN."""
    from scanner.emulator.demo_estate import MEMBER_ROLE_NAME
    from scanner.emulator.server import fake_credentials, make_session

    sts = make_session(fake_credentials(region)).client("sts", endpoint_url=endpoint)
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account_id}:role/{MEMBER_ROLE_NAME}",
                            RoleSessionName=session_name)["Credentials"]
    session = make_session({"aws_access_key_id": creds["AccessKeyId"],
                            "aws_secret_access_key": creds["SecretAccessKey"],
                            "aws_session_token": creds["SessionToken"], "region_name": region})
    ec2 = session.client("ec2", endpoint_url=endpoint)
    volume = ec2.create_volume(AvailabilityZone=f"{region}a", Size=1, TagSpecifications=[
        {"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
    return f"arn:aws:ec2:{region}:{account_id}:volume/{volume['VolumeId']}"
