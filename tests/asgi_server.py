"""Fixtures that run Lattice the way it is deployed: the ASGI app (pages, websockets and the
notebook proxy) under uvicorn, and a real Celery worker thread instead of eager tasks; and
requests to the ASGI app in the test's own process (``asgi_request``), signed in with
``session_cookie``.

pytest-django's ``live_server`` is WSGI only: no websockets, no ``/nb/`` proxy. The
server here runs ``config.asgi.application`` in a background thread, so it reads what the
test commits: it needs PostgreSQL (an in-memory SQLite database is private to the thread
that opened it).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from tests.conftest import service_missing

if TYPE_CHECKING:
    from collections.abc import Iterator

_START_TIMEOUT = 20.0


def session_cookie(user: Any) -> str:
    """The value of a session cookie signed in as ``user``."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def asgi_request(
    method: str, url: str, headers: dict[str, str] | None = None, body: Any = None
) -> httpx.Response:
    """One request to ``config.asgi.application`` through httpx's ASGI transport, in this
    process; ``url``'s host is the Host header, ``body`` goes as JSON."""
    from config.asgi import application

    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.request(method, url, headers=headers or {}, json=body)
            await response.aread()
            return response

    return async_to_sync(run)()


@contextlib.contextmanager
def serving(application: Any, *, name: str, **options: Any) -> Iterator[str]:
    """uvicorn serving ``application`` on a free loopback port in a thread, for the block;
    its base URL (``http://127.0.0.1:<port>``). ``options`` go to uvicorn.Config."""
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name=name, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            pytest.fail(f"uvicorn did not start on 127.0.0.1:{port}", pytrace=False)
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


@pytest.fixture
def asgi_live_server(transactional_db: None, settings: Any) -> Iterator[str]:
    """The base URL (``http://127.0.0.1:<port>``) of uvicorn serving config.asgi for this test."""
    if connection.vendor != "postgresql":
        service_missing(
            "needs PostgreSQL: the ASGI server's threads must see what the test commits "
            "(set DATABASE_URL=postgres://...)",
        )

    from apps.core import stream
    from config.asgi import application

    stream.reset_for_tests()
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "127.0.0.1", "localhost"]

    try:
        with serving(
            application,
            name="lattice-asgi",
            ws="websockets-sansio",
            ws_per_message_deflate=False,  # as in production (Dockerfile)
            # Let a test end while a browser still holds a websocket open.
            timeout_graceful_shutdown=3,
        ) as url:
            yield url
    finally:
        stream.reset_for_tests()


@pytest.fixture
def embedded_celery(transactional_db: None, settings: Any) -> Iterator[Any]:
    """A real worker thread on the control queue, the inbox (what agents say) and the local
    host's queue; tasks are queued (not run inline), as in production."""
    from apps.core import stream
    from apps.core.broker import INBOX_QUEUE
    from apps.core.worker import embedded_worker
    from config.celery import app as celery_app

    stream.reset_for_tests()
    was_eager = celery_app.conf.task_always_eager
    settings.CELERY_TASK_ALWAYS_EAGER = False
    celery_app.conf.task_always_eager = False
    try:
        with embedded_worker(queues=["control", INBOX_QUEUE, "host.local"]) as worker:
            yield worker
    finally:
        celery_app.conf.task_always_eager = was_eager
