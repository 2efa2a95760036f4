"""The worker process' Runtime, built on first use (not at import, so `celery inspect` stays cheap)."""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any

from celery.signals import worker_init, worker_process_init

from services.config import get_settings
from services.db.engine import Database
from services.runtime import Runtime
from workers.app import app
from workers.dispatch import CeleryDispatcher

logger = logging.getLogger(__name__)

# How long a task's follow-up messages (shards, retries, finalize) wait for a broker that is restarting.
BROKER_PATIENCE_S = 60.0

_lock = threading.Lock()
_runtime: Runtime | None = None
_shares_process = False  # use_runtime was called: the worker runs inside the gateway's (or CLI's) process


def worker_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            settings = get_settings()
            _runtime = Runtime(settings=settings, db=Database(settings.effective_database_url),
                               dispatcher=CeleryDispatcher(app, broker_patience_s=BROKER_PATIENCE_S))
        return _runtime


def use_runtime(runtime: Runtime) -> None:
    """Share an already-built Runtime (embedded mode: the gateway and its worker thread are one process)."""
    global _runtime, _shares_process
    with _lock:
        _runtime = runtime
        _shares_process = True


@worker_process_init.connect
def _own_connections_in_pool_process(**_kwargs: Any) -> None:
    """A prefork pool process must not reuse the database connections it inherited from the main process.

    The main process builds the Runtime too (Celery runs ShardTask.on_failure there when a hard time limit
    kills a shard), and every pool process forked after that would share its open connections: two
    processes on one server session corrupt each other's statements (DuplicatePreparedStatement), failing
    unrelated shards. dispose(close=False) gives this process a fresh pool and leaves the parent's
    connections alone."""
    if _runtime is not None:
        _runtime.db.engine.dispose(close=False)


@worker_init.connect
def _lower_cpu_priority(**_kwargs: Any) -> None:
    """Lower the worker's CPU priority to FINOPS_WORKER_NICE before the pool forks (its processes inherit it).

    Shards are throughput work, and each spends most of its time waiting on PostgreSQL, Redis and the cloud;
    on a host shared with the gateway and the database, a worker that yields the CPU to them keeps the API
    responsive and lets every shard's writes through sooner. Measured on bench.scale (2 cores, emulator on
    the same host, alternating runs): 200 ms ratio to floor 1.38-1.45 at nice 0, 1.30-1.32 at nice 10, and a
    status read's p95 during the scan 131-224 ms against 81-112 ms. Only ever lowered: a worker
    started under a higher nice value keeps it, and raising priority would need privileges."""
    import os

    if _shares_process:
        return  # an embedded worker: the process is the gateway's (or the CLI's), which must stay responsive
    wanted = get_settings().worker_nice
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if wanted > current:
            os.setpriority(os.PRIO_PROCESS, 0, wanted)
    except OSError as exc:  # a sandbox refusing setpriority: run at the inherited priority
        logger.warning("could not lower the worker's CPU priority to nice %d: %s", wanted, exc)


@worker_init.connect
def _prepare_aws_before_forking(**_kwargs: Any) -> None:
    """Parse the AWS models every collector's clients need once, in the main process, before the pool
    forks: each pool process inherits them instead of parsing them on its first shard (scanner.providers
    .aws.session.warm_up), and builds the clients of the configured regions (AwsSessionFactory.prepare).
    Costs the main process ~0.4 s at start, and ~6 ms per client.

    Then everything the main process holds (those models included) is moved out of the garbage collector's
    reach (gc.freeze): a pool process's full collections would otherwise walk the inherited models again
    and again (and write to their pages, unsharing them). Measured on bench.scale: GC CPU per pool process
    during a scan 0.31 -> 0.14 s."""
    from scanner.providers.aws import registry
    from scanner.providers.aws.session import warm_up

    settings = get_settings()
    services = sorted({registry.get(t).service for t in registry.all_types()} | {"resourcegroupstaggingapi"})
    warm_up([*services, "sts"], settings.aws_default_region)
    # The clients themselves too, for the regions this deployment scans (FINOPS_REGIONS; without an
    # allow-list only the default region, as every region of every service would be ~100 MB per process).
    try:
        worker_runtime().aws.prepare(services, [*settings.regions, settings.aws_default_region])
    except Exception:  # only a head start: the pool builds whatever is missing on first use
        logger.warning("could not build AWS clients before forking the pool", exc_info=True)
    gc.freeze()
