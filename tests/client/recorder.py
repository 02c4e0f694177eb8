"""A small HTTP server of a test's own standing in for "another host": it answers every GET
with JSON and records each request's path and Authorization header."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

SAVED_TOKEN = "lat_" + "S" * 40


class Recorder:
    """A local HTTP server answering every GET with ``answer(self)`` as JSON, recording
    (path, Authorization header) of each request."""

    def __init__(self, answer: Callable[[Recorder], dict[str, Any]]) -> None:
        self.seen: list[tuple[str, str | None]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append((self.path, self.headers.get("Authorization")))
                body = json.dumps(answer(recorder)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorders() -> Iterator[Callable[[Callable[[Recorder], dict[str, Any]]], Recorder]]:
    made: list[Recorder] = []

    def make(answer: Callable[[Recorder], dict[str, Any]]) -> Recorder:
        made.append(Recorder(answer))
        return made[-1]

    yield make
    for each in made:
        each.close()
