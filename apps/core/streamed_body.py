"""Request bodies handed to a Django view as they arrive, instead of spooled first.

Django's ASGI handler reads a whole request body into a temporary file (on disk past
2.5 MB) before the view runs, and the view then reads it back: for an 8 MiB upload
chunk that is the bytes written twice and read once more than needed, most of a
core per 100 MB/s. For the routes wrapped here the body goes from the server to the
view's thread through a small queue instead: a task on the event loop reads the
ASGI messages and passes them on in batches of about ``PIECE`` bytes; the view reads
``request.scope["lattice.body"]`` (a ``StreamedBody``) as an iterable of bytes, on
its own thread, while the next batches arrive. At most ``DEPTH`` batches wait, so the
memory a request holds is bounded whatever its size, and a request the view refuses
before reading (authentication, permission, throttle) has read at most that much.

Django itself is given an empty body, so nothing else in the request (DRF's parsers,
CSRF) can read this one; a view must take it from the scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

    Receive = Callable[[], Awaitable[dict[str, Any]]]
    Send = Callable[[dict[str, Any]], Awaitable[None]]
    ASGIApp = Callable[..., Awaitable[None]]

SCOPE_KEY = "lattice.body"
PIECE = 256 * 1024
DEPTH = 2


class StreamedBody:
    """One request's body: filled on the event loop by ``pump``, read on the view's thread
    by iterating. Ends early (the view sees fewer bytes) if the client disconnects."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        # Pieces, then None for the end; the pump keeps it at DEPTH pieces (not the queue:
        # the end must always find room).
        self._pieces: queue.SimpleQueue[list[bytes] | None] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._room = asyncio.Event()
        self.ended = asyncio.Event()
        self.disconnected = False
        self._gave_empty_body = False

    async def pump(self) -> None:
        """Read the ASGI messages of the body into the queue, about a piece at a time (the
        messages' bytes as the server gave them: joined, they would be copied again)."""
        batch: list[bytes] = []
        size = 0
        try:
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self.disconnected = True
                    return
                body = message.get("body", b"")
                if body:
                    batch.append(body)
                    size += len(body)
                more = message.get("more_body", False)
                if batch and (size >= PIECE or not more):
                    await self._put(batch)
                    batch, size = [], 0
                if not more:
                    return
        finally:
            self._pieces.put(None)
            self.ended.set()

    async def _put(self, batch: list[bytes]) -> None:
        while self._pieces.qsize() >= DEPTH:
            self._room.clear()
            if self._pieces.qsize() >= DEPTH:  # the view may have taken one meanwhile
                await self._room.wait()
        self._pieces.put(batch)

    def __iter__(self) -> Iterator[bytes]:
        """The body's bytes as they arrive (blocking: call it from a sync view)."""
        while (batch := self._pieces.get()) is not None:
            self._loop.call_soon_threadsafe(self._room.set)
            yield from batch

    async def receive_for_app(self) -> dict[str, Any]:
        """What the wrapped app's ``receive`` answers: an empty body at once, then, once
        the real body has been read, whatever the server says next (a disconnect)."""
        if not self._gave_empty_body:
            self._gave_empty_body = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.ended.wait()
        if self.disconnected:
            return {"type": "http.disconnect"}
        return await self._receive()


def streamed(app: ASGIApp) -> ASGIApp:
    """``app`` (Django) with the request's body streamed to the view (``SCOPE_KEY``)."""

    async def wrapped(scope: dict[str, Any], receive: Receive, send: Send) -> None:
        body = StreamedBody(receive)
        pump = asyncio.create_task(body.pump())
        try:
            await app({**scope, SCOPE_KEY: body}, body.receive_for_app, send)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    return wrapped
