"""Faults survived, nothing lost: a production-mode stack (PostgreSQL, a Redis broker, real `celery worker`
processes, a moto server over HTTP) scanning while something breaks under it.

Each test builds its own stack, breaks one thing for real and checks that the scan still ends the way the
design promises, with every resource stored exactly once:

* a pool process killed mid-shard (the shard is redelivered and completes), and the whole worker killed
  (its unacked shard waits for the broker's visibility timeout; readers fail it once it is stale);
* the Redis broker stopped and started again on the same port and data directory (appendonly, as in
  docker-compose.yml);
* PostgreSQL unreachable for a few seconds behind a switchable TCP forwarder (the API answers 503 with
  the fix, the workers retry their writes);
* a shard that hangs (the soft time limit ends it; the scan is partial and names it);
* a scan cancelled mid-way;
* 30% of AWS calls throttled (same results as an unthrottled scan).

Every server binds 127.0.0.1, every wait has a timeout, and every process is ended by its PID in a finally
block. Shards are slowed down with the scanner's own client-side rate limit (FINOPS_API_RATE_PER_S) or the
fault proxy's latency, so that a fault reliably lands while shards are running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from services import scans
from services.db.models import ScanResourceRow, ScanShardRow, ViolationRow
from services.schemas import TERMINAL_STATUSES, ScanRequest, ScanResult
from tests.conftest import WorkerProcess, free_port, wait_port
from tests.integration.conftest import expected_by_type

pytestmark = pytest.mark.integration

PG_HOST, PG_PORT = "127.0.0.1", 5432


# ------------------------------------------------------------------------------------------------ helpers

def wait_for(what: str, predicate: Callable[[], Any], timeout: float, on_timeout: Callable[[], str] = lambda: "",
             interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen after {timeout:.0f} s\n{on_timeout()}")
        time.sleep(interval)


def child_pids(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (read from /proc: the prefork pool processes of a worker we started)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # Field 4 is the parent PID; the command name (field 2) may hold spaces, so split after its ')'.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class RedisServer:
    """Our own redis-server on a free 127.0.0.1 port, persisting to an appendonly file in ``data_dir`` (as
    docker-compose.yml runs it), so it can be stopped and started again with its data. Never the machine's."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--dir", str(self.data_dir)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_port(self.port, timeout=15)
        # Accepting connections is not the same as having loaded the appendonly file: wait for PING.
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        wait_for("redis answering PING", lambda: _quietly(client.ping), 15)
        client.close()

    def stop(self) -> None:
        """SIGTERM (Redis flushes the appendonly file and exits), SIGKILL if it does not."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _quietly(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception:
        return None


class TcpForwarder:
    """A TCP forwarder on 127.0.0.1 in front of PostgreSQL that can be cut: while cut, new connections are
    refused (nothing listens) and open ones are dropped, which is what a database outage looks like."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._server: socket.socket | None = None
        self.accepted = 0

    def start(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(128)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True, name="pg-forwarder").start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return  # the listener was shut down (cut or stop)
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                self._close(sock)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._conns.discard(sock)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()

    def cut(self) -> None:
        """Refuse new connections and drop every open one."""
        server, self._server = self._server, None
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the listener thread
            server.close()
        with self._lock:
            conns = list(self._conns)
        for sock in conns:
            self._close(sock)

    def restore(self) -> None:
        self.start()

    def stop(self) -> None:
        self.cut()


class ApiServer:
    """The real gateway (api.http.app) served by uvicorn on a thread, over real HTTP on 127.0.0.1."""

    def __init__(self, rt: Any) -> None:
        import uvicorn

        from api.http.app import create_app

        self.port = free_port()
        config = uvicorn.Config(create_app(lambda: rt, settings=rt.settings), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="uvicorn")
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        self.thread.start()
        wait_for("the gateway to start", lambda: self.server.started, 30)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


class Stack:
    """A production-mode stack for one test: settings, migrations, worker processes and the gateway's
    Runtime (its CeleryDispatcher publishes to the same broker the workers consume)."""

    def __init__(self, tmp_path: Path, estate: Any, *, database_url: str, broker_url: str, aws_endpoint: str,
                 env: dict[str, str] | None = None, migrate_url: str | None = None) -> None:
        from scanner.emulator.server import aws_env
        from services.config import Settings
        from services.db.engine import Database
        from services.db.migrate import upgrade
        from services.runtime import Runtime
        from workers.app import create_app
        from workers.dispatch import CeleryDispatcher

        self.tmp_path, self.estate = tmp_path, estate
        extra = dict(env or {})
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("FINOPS_", "AWS_"))} | {
            "FINOPS_MODE": "production", "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url,
            "FINOPS_HOME": str(tmp_path), "FINOPS_POLICY_SOURCE": "file", **aws_env(aws_endpoint), **extra}
        self.env.pop("REDIS_URL", None)
        self.env.pop("AWS_PROFILE", None)
        # The same FINOPS_* values for this process (readers' reconcile uses the time limits too).
        overrides: dict[str, Any] = {k.removeprefix("FINOPS_").lower(): v for k, v in extra.items()
                                     if k.startswith("FINOPS_")}
        self.settings = Settings(mode="production", database_url=database_url, celery_broker_url=broker_url,
                                 home=tmp_path, aws_endpoint_url=aws_endpoint, policy_source="file", **overrides)
        upgrade(migrate_url or database_url)
        self.rt = Runtime(settings=self.settings, db=Database(database_url),
                          dispatcher=CeleryDispatcher(create_app(self.settings)))
        self.workers: list[WorkerProcess] = []
        self.restarts = 0

    def start_worker(self, concurrency: int = 2) -> WorkerProcess:
        worker = WorkerProcess(self.env, concurrency=concurrency,
                               log_path=self.tmp_path / f"worker-{len(self.workers)}.log")
        worker.concurrency = concurrency  # type: ignore[attr-defined]
        self.workers.append(worker)
        return worker

    def supervise(self) -> None:
        """Start a worker again when the last one exited, as the deployment's supervisor does
        (docker-compose.yml: restart: unless-stopped)."""
        last = self.workers[-1]
        if last.proc.poll() is not None and self.restarts < 3:
            self.restarts += 1
            self.start_worker(getattr(last, "concurrency", 2))

    def wait_worker_ready(self, worker: WorkerProcess, timeout: float = 60) -> None:
        wait_for("the worker to connect", lambda: " ready." in worker.log_text(), timeout, self.logs)

    def logs(self) -> str:
        return "\n".join(f"--- {w.log_path.name if w.log_path else '?'} (tail)\n{w.log_text()[-4000:]}"
                         for w in self.workers)

    def request(self) -> ScanRequest:
        return ScanRequest(accounts=list(self.estate.member_account_ids), regions=list(self.estate.regions),
                           resource_types=sorted(self.estate.resource_types))

    def submit(self) -> str:
        return scans.submit(self.rt, self.request())

    def wait_scan(self, scan_id: str, timeout: float, *, supervise: bool = False) -> ScanResult:
        def finished() -> ScanResult | None:
            if supervise:
                self.supervise()
            try:
                result = scans.get_scan(self.rt, scan_id, violations_limit=0)
            except Exception:  # e.g. the database still coming back: keep polling until the deadline
                return None
            return result if result.status in TERMINAL_STATUSES else None

        result: ScanResult = wait_for(f"scan {scan_id} finishing", finished, timeout,
                                      lambda: f"{self.progress(scan_id)}\n{self.logs()}", interval=0.3)
        return result

    def progress(self, scan_id: str) -> str:
        try:
            return str(scans.get_scan(self.rt, scan_id, violations_limit=0).progress)
        except Exception as exc:
            return f"(progress unreadable: {exc})"

    def shards(self, scan_id: str) -> list[ScanShardRow]:
        with self.rt.db.session() as s:
            return list(s.scalars(select(ScanShardRow).where(ScanShardRow.scan_id == scan_id)
                                  .order_by(ScanShardRow.id)))

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.rt.db.dispose()


def expected_total(estate: Any) -> dict[str, int]:
    return expected_by_type(estate, list(estate.member_account_ids))


def assert_stored_once(stack: Stack, scan_id: str) -> None:
    """Every resource and violation of the scan stored exactly once, and each shard's rows match its count."""
    sr, v = ScanResourceRow, ViolationRow
    with stack.rt.db.session() as s:
        rows, arns = s.execute(select(func.count(), func.count(func.distinct(sr.arn)))
                               .where(sr.scan_id == scan_id)).one()
        assert rows == arns, f"{rows - arns} duplicate resource rows"
        dupes = s.execute(select(v.resource_arn, v.rule_id, func.count()).where(v.scan_id == scan_id)
                          .group_by(v.resource_arn, v.rule_id).having(func.count() > 1)).all()
        assert dupes == [], dupes
        per_shard = dict(s.execute(select(sr.shard_id, func.count()).where(sr.scan_id == scan_id)
                                   .group_by(sr.shard_id)).all())
        # A violation belongs to a stored resource of the same shard (nothing left from a half-written shard).
        orphans = s.scalar(select(func.count()).select_from(v).where(
            v.scan_id == scan_id, ~select(sr.arn).where(sr.scan_id == scan_id, sr.arn == v.resource_arn,
                                                         sr.shard_id == v.shard_id).exists()))
        assert orphans == 0, f"{orphans} violations without their resource row"
    for shard in stack.shards(scan_id):
        assert per_shard.get(shard.id, 0) == shard.resources_found, (shard.id, shard.status, per_shard.get(shard.id))


def assert_complete(stack: Stack, result: ScanResult) -> None:
    """The scan succeeded with every resource of the estate, stored once."""
    assert result.status == "succeeded", (result.status, result.data_quality, stack.logs())
    assert result.data_quality.status == "complete", result.data_quality
    found = {k: v.total for k, v in result.breakdowns.by_resource_type.items()}
    assert found == expected_total(stack.estate)
    assert result.total_resources == sum(expected_total(stack.estate).values())
    assert_stored_once(stack, result.scan_id)


def running_shard(stack: Stack, scan_id: str, min_seconds: float = 0.5) -> ScanShardRow | None:
    """A shard that has been running for at least ``min_seconds`` (so a fault lands mid-shard)."""
    now = datetime.now(UTC)
    for shard in stack.shards(scan_id):
        if shard.status == "running" and shard.started_at is not None:
            started = shard.started_at if shard.started_at.tzinfo else shard.started_at.replace(tzinfo=UTC)
            if (now - started).total_seconds() >= min_seconds:
                return shard
    return None


# ----------------------------------------------------------------------------------------------- fixtures

# Two calls per second and no burst per (account, region, API family): a shard of the small estate then
# takes a few seconds, long enough for a fault to land while shards run, short enough for the test.
# Shards slow enough to catch one running: few calls per shard since tags are read in bulk, so a low budget.
SLOW_SHARDS = {"FINOPS_API_RATE_PER_S": "0.5", "FINOPS_API_BURST": "1"}
CLAIM_COMMIT_SLACK = timedelta(seconds=1)


@pytest.fixture()
def estate(aws_environment: Any) -> Any:
    from scanner.emulator.demo_estate import seed_small_estate

    return seed_small_estate(aws_environment.endpoint_url)


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """Each test's broker is its own redis-server: a shared Redis database (the machine's db 13) is flushed
    and consumed by other test runs' workers, which would steal or drop this test's messages."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------- faults

def test_cancelled_mid_way_stops_shards_and_leaves_nothing_half_written(
        tmp_path: Path, estate: Any, postgres_url: str, own_redis: RedisServer, aws_environment: Any) -> None:
    stack = Stack(tmp_path, estate, database_url=postgres_url, broker_url=own_redis.url,
                  aws_endpoint=aws_environment.endpoint_url, env=SLOW_SHARDS)
    try:
        worker = stack.start_worker(concurrency=2)
        stack.wait_worker_ready(worker)
        started = time.monotonic()
        scan_id = stack.submit()
        # Mid-way: some shards done, some running, the rest still queued.
        wait_for("a finished shard and a running one", lambda: {"succeeded", "running", "queued"} <= {
            sh.status for sh in stack.shards(scan_id)}, 60, stack.logs)
        snapshot_at = datetime.now(UTC)
        before = {sh.id: sh.status for sh in stack.shards(scan_id)}
        answer = scans.cancel_scan(stack.rt, scan_id)
        cancelled_at = datetime.now(UTC)
        assert answer.status in ("running", "cancelled"), answer.status
        result = stack.wait_scan(scan_id, timeout=60)
        elapsed = time.monotonic() - started

        assert result.status == "cancelled", (result.status, result.data_quality)
        assert result.data_quality.status == "partial"
        assert any("cancelled" in note for note in result.data_quality.notes), result.data_quality.notes
        after = stack.shards(scan_id)
        for shard in after:
            if shard.started_at is None:  # never started: cancelled untouched, no calls, no rows
                assert shard.status == "cancelled" and shard.resources_found == 0 and shard.api_calls == 0, shard.id
                continue
            started_at = shard.started_at if shard.started_at.tzinfo else shard.started_at.replace(tzinfo=UTC)
            # No shard started after the cancel (one queued at the snapshot may have started in the instant
            # before the cancel landed).
            assert started_at < cancelled_at, (shard.id, started_at, cancelled_at)
            if before.get(shard.id) == "queued":
                # The claim stamps started_at, then reads the scan, then commits: a shard whose claim was
                # committing while the snapshot was read shows "queued" with a started_at a few ms earlier.
                # A second of slack still catches a shard that was really running (each takes seconds here).
                assert started_at >= snapshot_at - CLAIM_COMMIT_SLACK, (shard.id, started_at, snapshot_at)
        # Shards running at the cancel were allowed to finish: every shard ends terminal, none stays running.
        assert {sh.status for sh in after} <= {"succeeded", "cancelled", "failed"}, [(s.id, s.status) for s in after]
        assert sum(sh.status == "cancelled" for sh in after) > 0
        # Nothing half-written: only finished shards have rows, and their rows are complete and unique.
        assert_stored_once(stack, scan_id)
        stored = sum(sh.resources_found for sh in after if sh.status == "succeeded")
        assert result.total_resources == stored < sum(expected_total(estate).values())
        print(f"\ncancel: {len(after)} shards, {sum(sh.status == 'cancelled' for sh in after)} cancelled, "
              f"{stored} resources kept, {elapsed:.1f} s")
    finally:
        stack.stop()


def test_redis_restarted_during_a_scan_the_scan_completes(
        tmp_path: Path, estate: Any, postgres_url: str, own_redis: RedisServer, aws_environment: Any) -> None:
    stack = Stack(tmp_path, estate, database_url=postgres_url, broker_url=own_redis.url,
                  aws_endpoint=aws_environment.endpoint_url, env=SLOW_SHARDS)
    try:
        worker = stack.start_worker(concurrency=2)
        stack.wait_worker_ready(worker)
        started = time.monotonic()
        scan_id = stack.submit()
        wait_for("shards running with others still queued", lambda: {"running", "queued"} <= {
            sh.status for sh in stack.shards(scan_id)}, 60, stack.logs)
        wait_for("a shard running for a while", lambda: running_shard(stack, scan_id, 1.0), 30, stack.logs)
        before = {sh.id: sh.status for sh in stack.shards(scan_id)}
        own_redis.stop()
        time.sleep(3)  # the broker is away while shards finish and try to send their follow-ups
        own_redis.start()
        result = stack.wait_scan(scan_id, timeout=90, supervise=True)
        elapsed = time.monotonic() - started

        assert_complete(stack, result)
        assert "Connection to broker lost" in worker.log_text(), worker.log_text()[-3000:]
        print(f"\nredis restart: shards at the stop {sorted(before.values())}, scan done in {elapsed:.1f} s, "
              f"worker restarts {stack.restarts}")
    finally:
        stack.stop()


# 5 s: a blip. 12 s: a PostgreSQL restart; before workers waited out the database (workers/tasks.py), shard
# tasks gave up after 7 s and could not record their failure either, so such a scan stayed "running" forever.
@pytest.mark.parametrize("cut_seconds", [5, 12])
def test_postgres_unreachable_for_seconds_api_answers_503_and_workers_retry(
        tmp_path: Path, estate: Any, postgres_url: str, own_redis: RedisServer, aws_environment: Any,
        cut_seconds: int) -> None:
    from services.auth import ApiKeyStore

    forwarder = TcpForwarder(PG_PORT, PG_HOST)
    forwarder.start()
    # Everything (gateway, workers) reaches the database through the forwarder; migrations go direct.
    through = postgres_url.replace(f"@{PG_HOST}:{PG_PORT}/", f"@127.0.0.1:{forwarder.port}/")
    assert through != postgres_url
    stack = Stack(tmp_path, estate, database_url=through, broker_url=own_redis.url,
                  aws_endpoint=aws_environment.endpoint_url, env=SLOW_SHARDS, migrate_url=postgres_url)
    api = ApiServer(stack.rt)
    try:
        key = ApiKeyStore(stack.rt.db).create("faults-test", ["tag:read"]).key
        api.start()
        http = httpx.Client(base_url=api.url, headers={"X-API-Key": key}, timeout=30)
        worker = stack.start_worker(concurrency=2)
        stack.wait_worker_ready(worker)
        started = time.monotonic()
        scan_id = stack.submit()
        wait_for("a shard running for a while", lambda: running_shard(stack, scan_id, 1.0), 60, stack.logs)
        assert http.get(f"/v1/scans/{scan_id}").status_code == 200

        forwarder.cut()
        cut_at = time.monotonic()
        answers = []
        while time.monotonic() - cut_at < cut_seconds:
            answers.append(http.get(f"/v1/scans/{scan_id}"))
            time.sleep(0.5)
        forwarder.restore()

        assert answers and all(a.status_code == 503 for a in answers), [(a.status_code, a.text) for a in answers]
        for answer in answers:
            error = answer.json()["error"]
            assert error["code"] == "unavailable", error
            assert "database" in error["message"] and "DATABASE_URL" in error["fix"], error
            assert "Traceback" not in answer.text and "psycopg" not in answer.text, answer.text
        # It recovers: the same call answers 200 again once the database is back.
        back = wait_for("the gateway answering 200 again", lambda: (
            lambda r: r if r.status_code == 200 else None)(http.get(f"/v1/scans/{scan_id}")), 30, stack.logs)
        recovered_after = time.monotonic() - cut_at - cut_seconds
        assert back.json()["scan_id"] == scan_id

        result = stack.wait_scan(scan_id, timeout=90)
        assert_complete(stack, result)
        log = worker.log_text()
        # The workers' writes during the cut were retried (Unavailable -> Celery retry), not dropped.
        assert "Retry in" in log and "Unavailable" in log, log[-4000:]
        elapsed = time.monotonic() - started
        print(f"\npostgres cut {cut_seconds} s: {len(answers)} answers 503, 200 again {recovered_after:.1f} s after, "
              f"{log.count('Retry in')} task retries, scan done in {elapsed:.1f} s")
        http.close()
    finally:
        api.stop()
        stack.stop()
        forwarder.stop()


@pytest.fixture()
def proxy(aws_environment: Any) -> Iterator[Any]:
    """The fault proxy (its own process on 127.0.0.1) in front of the moto server."""
    from scanner.emulator.fault_proxy import FaultProxy

    fault_proxy = FaultProxy(aws_environment.endpoint_url, seed=7)
    fault_proxy.start()
    try:
        yield fault_proxy
    finally:
        fault_proxy.stop()


def test_pool_process_killed_mid_shard_the_shard_is_redelivered_once(
        tmp_path: Path, estate: Any, postgres_url: str, own_redis: RedisServer, proxy: Any) -> None:
    # A slow round trip per AWS call until the kill, so that a shard is surely caught running; fast afterwards.
    proxy.configure(latency_ms=1000)
    stack = Stack(tmp_path, estate, database_url=postgres_url, broker_url=own_redis.url, aws_endpoint=proxy.url)
    try:
        # One pool process: the one running a shard is the worker's only child.
        worker = stack.start_worker(concurrency=1)
        stack.wait_worker_ready(worker)
        [pool_pid] = wait_for("the pool process", lambda: child_pids(worker.proc.pid), 30, stack.logs)
        started = time.monotonic()
        scan_id = stack.submit()
        victim = wait_for("a shard running", lambda: running_shard(stack, scan_id, 0.5), 60, stack.logs)
        assert victim.attempts == 1 and victim.resources_found == 0
        os.kill(pool_pid, signal.SIGKILL)
        proxy.configure(latency_ms=20)
        result = stack.wait_scan(scan_id, timeout=90)
        elapsed = time.monotonic() - started

        assert_complete(stack, result)
        [again] = [sh for sh in stack.shards(scan_id) if sh.id == victim.id]
        # Redelivered (acks_late + reject_on_worker_lost) and run once more to the end, by a new pool process.
        assert again.status == "succeeded" and again.attempts == 2, (again.status, again.attempts)
        assert all(sh.attempts == 1 for sh in stack.shards(scan_id) if sh.id != victim.id)
        log = worker.log_text()
        assert "WorkerLostError" in log or "signal 9" in log, log[-3000:]
        assert pool_pid not in child_pids(worker.proc.pid) and worker.proc.poll() is None
        print(f"\npool process killed: shard {victim.id.split('/', 1)[1]} redelivered, scan done in {elapsed:.1f} s")
    finally:
        stack.stop()


def test_whole_worker_killed_its_unacked_shard_waits_for_the_visibility_timeout(
        tmp_path: Path, estate: Any, postgres_url: str, own_redis: RedisServer, proxy: Any) -> None:
    """SIGKILL of the worker's main process (and its pool: a container killed, a node lost) leaves the shard it
    was running unacked in Redis. Redis hands an unacked message out again only after the transport's
    visibility_timeout (workers/app.py: at least an hour, so a long shard is never run twice at once), so a
    new worker does not pick it up; everything else goes on, and readers (scans.reconcile) fail the orphaned
    shard once it has been running past the hard time limit + 60 s: the scan ends partial, naming it."""
    import redis

    from workers.app import _transport_options

    proxy.configure(latency_ms=1000)
    limits = {"FINOPS_SHARD_SOFT_TIME_LIMIT": "4", "FINOPS_SHARD_HARD_TIME_LIMIT": "6"}
    stack = Stack(tmp_path, estate, database_url=postgres_url, broker_url=own_redis.url, aws_endpoint=proxy.url,
                  env=limits)
    assert _transport_options(stack.settings)["visibility_timeout"] >= 3600
    try:
        first = stack.start_worker(concurrency=1)
        stack.wait_worker_ready(first)
        scan_id = stack.submit()
        victim = wait_for("a shard running", lambda: running_shard(stack, scan_id, 0.5), 60, stack.logs)
        pool = child_pids(first.proc.pid)
        first.proc.kill()  # SIGKILL to the PID we started, then to its pool processes
        first.proc.wait(10)
        for pid in pool:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proxy.configure(latency_ms=20)
        killed_at = time.monotonic()
        wait_for("the pool processes gone", lambda: not any(pid_alive(p) for p in pool), 10)

        # The message of the shard it was running is still in Redis, unacked (kombu's "unacked" hash).
        broker = redis.Redis.from_url(own_redis.url)
        unacked = [raw for raw in broker.hvals("unacked") if victim.id.encode() in raw]
        assert len(unacked) == 1, broker.hvals("unacked")
        task_id = json.loads(unacked[0])[0]["headers"]["id"]

        second = stack.start_worker(concurrency=2)
        stack.wait_worker_ready(second)
        # The new worker finishes every other shard; the orphan is still "running", not redelivered.
        wait_for("every other shard done", lambda: all(
            sh.status == "succeeded" for sh in stack.shards(scan_id) if sh.id != victim.id), 60, stack.logs)
        [orphan] = [sh for sh in stack.shards(scan_id) if sh.id == victim.id]
        assert orphan.status == "running" and orphan.attempts == 1
        assert task_id not in second.log_text()

        result = stack.wait_scan(scan_id, timeout=6 + 60 + 30)
        waited = time.monotonic() - killed_at
        assert result.status == "partial", (result.status, result.data_quality)
        assert [f.shard for f in result.data_quality.failed_shards] == [victim.id.split("/", 1)[1]]
        assert "worker died" in result.data_quality.failed_shards[0].error
        found = {k: v.total for k, v in result.breakdowns.by_resource_type.items()}
        expected = expected_total(estate)
        lost = [r for r in estate.resources if (r.account_id, r.region) == (victim.account_id, victim.region)
                and r.resource_type in victim.resource_types]
        assert sum(found.values()) == sum(expected.values()) - len(lost)
        assert_stored_once(stack, scan_id)
        # ...and its message is still waiting out the visibility timeout (harmless when it comes back: the
        # shard is terminal, so run_shard returns at once).
        assert [raw for raw in broker.hvals("unacked") if victim.id.encode() in raw] == unacked
        assert task_id not in second.log_text()
        print(f"\nworker killed: shard {victim.id.split('/', 1)[1]} failed by reconcile {waited:.1f} s after the kill")
        broker.close()
    finally:
        stack.stop()


def test_a_hung_shard_is_ended_by_its_time_limit_and_the_scan_is_partial_naming_it(
        tmp_path: Path, estate: Any, postgres_url: str, own_redis: RedisServer, proxy: Any) -> None:
    # Every DynamoDB call hangs (the proxy holds it without answering): each account-region's shard hangs on
    # its tables while its other types finish. The soft limit stops the shard: the finished types are stored,
    # the tables are named as not finished. (Once the soft limit did not end a shard at all: botocore wrapped
    # it and the scanner retried it as a network error, so the hard limit killed the pool process; Celery then
    # ran ShardTask.on_failure in the worker's main process, whose database connection pool processes forked
    # afterwards shared, failing unrelated shards; fixed in workers/runtime.py.)
    proxy.configure(hang_services=["dynamodb"])
    limits = {"FINOPS_SHARD_SOFT_TIME_LIMIT": "4", "FINOPS_SHARD_HARD_TIME_LIMIT": "8"}
    stack = Stack(tmp_path, estate, database_url=postgres_url, broker_url=own_redis.url, aws_endpoint=proxy.url,
                  env=limits)
    try:
        worker = stack.start_worker(concurrency=2)
        stack.wait_worker_ready(worker)
        started = time.monotonic()
        scan_id = stack.submit()
        result = stack.wait_scan(scan_id, timeout=80)
        elapsed = time.monotonic() - started

        # Every account-region's shard holds DynamoDB among its types.
        hung = sorted(sh.id.split("/", 1)[1] for sh in stack.shards(scan_id) if "dynamodb:table" in sh.resource_types)
        assert len(hung) == len(estate.member_account_ids) * len(estate.regions)
        assert result.status == "partial", (result.status, result.data_quality)
        assert result.data_quality.status == "partial"
        assert sorted(f.shard for f in result.data_quality.failed_shards) == hung, result.data_quality
        for failed in result.data_quality.failed_shards:
            assert failed.error.startswith("dynamodb:table: TimeLimit:") and "time limit" in failed.error, failed.error
        # The types that finished before the limit are kept: every resource but the tables is there, once.
        expected = {t: n for t, n in expected_total(estate).items() if t != "dynamodb:table"}
        assert {k: v.total for k, v in result.breakdowns.by_resource_type.items()} == expected
        assert_stored_once(stack, scan_id)
        print(f"\nhung shards: {len(hung)} ended by their time limit, scan partial in {elapsed:.1f} s")
    finally:
        proxy.configure(hang_services=[])  # release whatever is still held before the worker stops
        stack.stop()


def _scan_rows(stack: Stack, scan_id: str) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    """What a scan found, comparable across scans: resources (with tags and verdicts) and violations."""
    sr, v = ScanResourceRow, ViolationRow
    with stack.rt.db.session() as s:
        resources = {(r.arn, r.resource_type, r.account_id, r.region, tuple(sorted(r.tags.items())), r.in_scope,
                      r.compliant) for r in s.scalars(select(sr).where(sr.scan_id == scan_id))}
        violations = {(x.resource_arn, x.rule_id, x.tag_name, x.violation_type, x.severity, x.current_value)
                      for x in s.scalars(select(v).where(v.scan_id == scan_id))}
    return resources, violations


def test_thirty_percent_of_aws_calls_throttled_the_scan_completes_with_the_same_results(
        tmp_path: Path, estate: Any, postgres_url: str, own_redis: RedisServer, proxy: Any) -> None:
    stack = Stack(tmp_path, estate, database_url=postgres_url, broker_url=own_redis.url, aws_endpoint=proxy.url)
    try:
        worker = stack.start_worker(concurrency=2)
        stack.wait_worker_ready(worker)
        baseline = stack.wait_scan(stack.submit(), timeout=60)
        assert_complete(stack, baseline)
        assert baseline.progress.retries == 0

        proxy.reset()
        proxy.configure(throttle_fraction=0.3)
        started = time.monotonic()
        throttled = stack.wait_scan(stack.submit(), timeout=85)
        elapsed = time.monotonic() - started
        stats = proxy.stats()

        assert_complete(stack, throttled)
        assert stats["throttled"] > 0 and 0.15 < stats["throttled"] / stats["requests"] < 0.45, stats
        assert throttled.progress.retries > 0, throttled.progress
        # Exactly what the unthrottled scan found: the same resources, tags, verdicts and violations.
        assert _scan_rows(stack, throttled.scan_id) == _scan_rows(stack, baseline.scan_id)
        assert throttled.compliance_score == baseline.compliance_score
        assert throttled.violations_total == baseline.violations_total
        print(f"\nthrottled 30%: {stats['throttled']} of {stats['requests']} calls throttled, "
              f"{throttled.progress.retries} retries, {throttled.progress.api_calls} calls, done in {elapsed:.1f} s")
    finally:
        stack.stop()


def test_redis_restarted_while_the_scan_is_planned_the_scan_completes(
        tmp_path: Path, estate: Any, postgres_url: str, own_redis: RedisServer, proxy: Any) -> None:
    # Planning makes a few AWS calls (assume role, list regions) per account: slow them down so that the
    # broker goes away after the plan task started and before it sends the shards.
    proxy.configure(latency_ms=1000)
    stack = Stack(tmp_path, estate, database_url=postgres_url, broker_url=own_redis.url, aws_endpoint=proxy.url)
    try:
        worker = stack.start_worker(concurrency=2)
        stack.wait_worker_ready(worker)
        scan_id = stack.submit()
        wait_for("the plan task running", lambda: "scan.plan[" in worker.log_text(), 30, stack.logs)
        own_redis.stop()
        wait_for("the shards planned", lambda: stack.shards(scan_id), 30, stack.logs)
        time.sleep(3)
        proxy.configure(latency_ms=20)
        own_redis.start()
        result = stack.wait_scan(scan_id, timeout=80, supervise=True)
        assert_complete(stack, result)
        print(f"\nredis restart while planning: scan done, worker restarts {stack.restarts}")
    finally:
        stack.stop()
