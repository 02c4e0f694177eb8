"""A Celery worker that runs as a thread inside another process.

The embedded default (`manage.py dev`) has no Redis: it uses Celery's in-memory
transport, which only reaches consumers in the same process, so the worker runs
here as a thread pool beside the web server. Requests still never wait for
background work: they queue a task and return. With REDIS_URL set the same
worker consumes from Redis, and separate `celery worker` processes can join.
"""

from __future__ import annotations

import logging
import socket
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from celery.signals import task_postrun, task_prerun
from celery.worker import WorkController
from django.db import close_old_connections

from config.celery import app as celery_app

if TYPE_CHECKING:
    from collections.abc import Iterator

    from celery import Celery

logger = logging.getLogger(__name__)


class _EmbeddedWorkController(WorkController):
    """A WorkController that says when its consumer is ready (as celery.contrib.testing's)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer: Any) -> None:
        self.ready.set()


def _close_connections(**_: Any) -> None:
    # A real worker's Django fixup does this; a thread pool must too, or each
    # thread keeps a database connection open for ever.
    close_old_connections()


@contextmanager
def embedded_worker(
    app: Celery = celery_app,
    *,
    queues: list[str] | None = None,
    concurrency: int = 4,
    ready_timeout: float = 30.0,
) -> Iterator[WorkController]:
    """Run a worker thread for the duration of the block, consuming ``queues``."""
    queues = queues or [app.conf.task_default_queue]
    task_prerun.connect(_close_connections, weak=False)
    task_postrun.connect(_close_connections, weak=False)
    worker = _EmbeddedWorkController(
        app=app,
        hostname=f"embedded.{threading.get_ident()}@{socket.gethostname()}",
        pool="threads",
        concurrency=concurrency,
        queues=queues,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=worker.start, name="lattice-worker", daemon=True)
    thread.start()
    if not worker.ready.wait(ready_timeout):
        worker.stop()
        raise RuntimeError(f"the embedded worker did not start within {ready_timeout:.0f}s")
    logger.info("embedded worker consuming %s", ", ".join(queues))
    try:
        yield worker
    finally:
        worker.stop(in_sighandler=False, exitcode=0)
        thread.join(timeout=10)
        task_prerun.disconnect(_close_connections)
        task_postrun.disconnect(_close_connections)


@contextmanager
def embedded_beat(app: Celery = celery_app) -> Iterator[None]:
    """Run Celery beat (the periodic tasks: reconciler, heartbeat) as a thread for the block.

    Its schedule is CELERY_BEAT_SCHEDULE, held in memory: celery's default scheduler would
    write a ``celerybeat-schedule`` shelve into the working directory, and the database
    scheduler a row per tick into SQLite, for a clock that restarts with the process anyway.
    """
    from celery.beat import EmbeddedService

    service: Any = EmbeddedService(  # a thread, given thread=True
        app, thread=True, scheduler_cls="celery.beat:Scheduler"
    )
    service.start()
    logger.info("embedded beat started (in memory): %s", ", ".join(sorted(app.conf.beat_schedule)))
    try:
        yield
    finally:
        service.stop()
