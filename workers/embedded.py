"""An in-process Celery worker for the embedded mode: the same tasks, consumed from the in-memory
broker on a thread pool, so submit -> poll -> read stays asynchronous without any server."""

from __future__ import annotations

import logging
import threading

from celery import Celery

from workers.app import QUEUES

log = logging.getLogger(__name__)


class EmbeddedWorker:
    """Runs a Celery WorkController on a daemon thread of this process."""

    def __init__(self, app: Celery, *, concurrency: int = 4) -> None:
        import workers.tasks  # noqa: F401  registers the tasks on the app

        self._ready = threading.Event()
        self._worker = app.WorkController(
            concurrency=concurrency,
            pool_cls="threads",
            loglevel="WARNING",
            queues=list(QUEUES),
            ready_callback=lambda *_: self._ready.set(),
            # No broker events or cluster chatter: there is no other node to talk to.
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
        )
        self._thread = threading.Thread(target=self._worker.start, name="finops-embedded-worker", daemon=True)

    def start(self, timeout: float = 15.0) -> EmbeddedWorker:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the embedded Celery worker did not start")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        from celery.worker import state

        state.should_terminate = 0
        self._thread.join(timeout)
        state.should_terminate = None
