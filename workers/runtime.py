"""The worker process' Runtime, built on first use (not at import, so `celery inspect` stays cheap)."""

from __future__ import annotations

import threading

from services.config import get_settings
from services.db.engine import Database
from services.runtime import Runtime
from workers.app import app
from workers.dispatch import CeleryDispatcher

_lock = threading.Lock()
_runtime: Runtime | None = None


def worker_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            settings = get_settings()
            _runtime = Runtime(settings=settings, db=Database(settings.effective_database_url),
                               dispatcher=CeleryDispatcher(app))
        return _runtime


def use_runtime(runtime: Runtime) -> None:
    """Share an already-built Runtime (embedded mode: the gateway and its worker thread are one process)."""
    global _runtime
    with _lock:
        _runtime = runtime
