"""Shared fixtures: real services (PostgreSQL, Redis, a moto server, Celery worker processes).

A test that needs a service skips with a loud reason when the service is missing, unless
REQUIRE_SERVICES=1 (set by .ci/run), where it fails instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REQUIRE = os.environ.get("REQUIRE_SERVICES") == "1"
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("TEST_REDIS_PORT", "6379"))


def service_missing(what: str) -> None:
    """Skip loudly, or fail when services are required."""
    message = f"SERVICE MISSING: {what}"
    if REQUIRE:
        pytest.fail(message + " (REQUIRE_SERVICES=1)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture(scope="session")
def emulator() -> Iterator[object]:
    """One in-process moto server for the session (its state is process-wide: reset between uses)."""
    from scanner.emulator.server import EmulatorServer

    server = EmulatorServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as exc:
        service_missing(f"PostgreSQL at {PG_ADMIN_URL} ({type(exc).__name__})")
        raise
    name = f"finops_test_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture()
def redis_url() -> str:
    """A Redis database number reserved for tests, emptied first."""
    try:
        import redis

        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=13, socket_connect_timeout=2)
        client.ping()
    except Exception as exc:
        service_missing(f"Redis at {REDIS_HOST}:{REDIS_PORT} ({type(exc).__name__})")
        raise
    client.flushdb()
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/13"


def celery_bin() -> str:
    path = Path(sys.executable).parent / "celery"
    return str(path) if path.exists() else (shutil.which("celery") or "celery")


class WorkerProcess:
    """A real `celery -A workers.app worker` process, ended by its PID."""

    def __init__(self, env: dict[str, str], *, concurrency: int = 2, pool: str = "prefork",
                 log_path: Path | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [celery_bin(), "-A", "workers.app", "worker", "--loglevel", "INFO", "-Q", "default,aws",
             "--concurrency", str(concurrency), "--pool", pool, "--without-gossip", "--without-mingle",
             "-n", f"test-{uuid.uuid4().hex[:6]}@%h"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""
