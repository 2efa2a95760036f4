"""Composition root of the front doors: settings + database + dispatcher (+ embedded worker).

In the embedded mode this process also migrates its SQLite file and runs the Celery worker on a
thread; in production the schema comes from the migrate step and workers are separate processes.
"""

from __future__ import annotations

import logging
import threading

from services.config import Settings, get_settings
from services.db.engine import Database
from services.db.migrate import upgrade
from services.errors import Unavailable
from services.runtime import Runtime

log = logging.getLogger(__name__)
_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime(settings: Settings | None = None) -> Runtime:
    """The process' Runtime, built once."""
    global _runtime
    with _lock:
        if _runtime is not None:
            return _runtime
        settings = settings or get_settings()
        from workers.app import app
        from workers.dispatch import CeleryDispatcher
        from workers.runtime import use_runtime

        db = Database(settings.effective_database_url)
        if db.is_sqlite:
            try:
                upgrade(settings.effective_database_url)
            except Exception as exc:
                raise Unavailable("the embedded database could not be prepared",
                                  fix=f"check that {settings.home} is writable, or set DATABASE_URL") from exc
        runtime = Runtime(settings=settings, db=db, dispatcher=CeleryDispatcher(app))
        if settings.embedded_worker:
            from workers.embedded import EmbeddedWorker

            use_runtime(runtime)
            # Lives as long as the process (a daemon thread); nothing stops it earlier.
            EmbeddedWorker(app, concurrency=settings.embedded_worker_threads).start()
        _runtime = runtime
        return runtime
