"""The gateway's HTTP/1.1 client to replicas: keep-alive connections pooled per replica
endpoint and event loop, on asyncio streams, nothing more.

Why not httpx: measured in bench/deployments_gateway.py (64 clients), httpx + httpcore +
anyio cost the gateway's process most of its CPU per request (httpcore's pool also scans
every connection for every waiting request), several times what the rest of the gateway
costs. What a replica needs is small: one request at a time per connection, the answer's
framing (Content-Length, chunked, or until the replica closes: server-sent events), and
the connection back to the pool when the answer ended cleanly.

``Refused``: the replica could not be reached (nothing was sent; safe to try another).
A pooled connection the replica had closed meanwhile is retried once on a new one.
``TimedOut``: the replica sent no answer's head within ``read_timeout`` (the gateway
answers 504); a body that stops for as long is cut off (``UpstreamError``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable

T = TypeVar("T")

CONNECT_TIMEOUT = 3.0
MAX_HEAD = 64 * 1024
READ_SIZE = 64 * 1024
IDLE_PER_ENDPOINT = 64
_NO_BODY_STATUSES = (204, 304)


class Refused(Exception):  # noqa: N818 - an event, not an error
    """The replica could not be reached (refused, unreachable, timed out connecting), or
    it closed a new connection without a byte of answer: what a dead container looks like
    behind Docker's port proxy, which still accepts. Either way another replica may take
    the request."""


class UpstreamError(Exception):
    """The replica broke off (closed the connection, sent what is not HTTP/1.1)."""


class TimedOut(UpstreamError):  # noqa: N818 - an event, not an error
    """The replica sent no answer within the read timeout."""


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


class Response:
    """A replica's answer: status and headers now, the body as ``chunks()`` yields it."""

    def __init__(
        self,
        pool: Pool,
        endpoint: str,
        connection: _Connection,
        status: int,
        headers: list[tuple[bytes, bytes]],
        *,
        head_only: bool,
        read_timeout: float | None = None,
    ) -> None:
        self.status = status
        self._timeout = read_timeout
        self.headers = headers
        self._pool, self._endpoint, self._connection = pool, endpoint, connection
        names = {n.lower(): v for n, v in headers}
        self.content_type = names.get(b"content-type", b"").decode("latin-1")
        self._keep = names.get(b"connection", b"").lower() != b"close"
        self._length: int | None = None
        self._chunked = b"chunked" in names.get(b"transfer-encoding", b"").lower()
        if head_only or status in _NO_BODY_STATUSES or 100 <= status < 200:  # noqa: PLR2004
            self._length = 0
        elif not self._chunked:
            length = names.get(b"content-length")
            if length is not None and length.strip().isdigit():
                self._length = int(length)
            else:
                self._keep = False  # until the replica closes
        self._done = self._closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (chunked framing taken off); UpstreamError when the
        replica sends nothing for the read timeout."""
        reader = self._connection.reader
        try:
            if self._chunked:
                async for chunk in _dechunk(reader, self._timeout):
                    yield chunk
            elif self._length is not None:
                left = self._length
                while left:
                    chunk = await _within(reader.read(min(left, READ_SIZE)), self._timeout)
                    if not chunk:
                        raise UpstreamError("the replica closed before the end of its answer")
                    left -= len(chunk)
                    yield chunk
            else:
                while chunk := await _within(reader.read(READ_SIZE), self._timeout):
                    yield chunk
            self._done = True
        finally:
            self.close()

    def close(self) -> None:
        """Give the connection back (a whole answer on keep-alive) or close it; once."""
        if self._closed:
            return
        self._closed = True
        if self._done and self._keep and self._connection.usable():
            self._pool.release(self._endpoint, self._connection)
        else:
            self._connection.close()


async def _within(read: Awaitable[T], timeout: float | None) -> T:
    """``read`` unless the replica is silent for ``timeout`` seconds (then UpstreamError)."""
    try:
        return await asyncio.wait_for(read, timeout)
    except TimeoutError as exc:
        raise UpstreamError(f"the replica sent nothing for {timeout:g} s") from exc


async def _dechunk(reader: asyncio.StreamReader, timeout: float | None) -> AsyncIterator[bytes]:
    while True:
        line = await _within(reader.readuntil(b"\r\n"), timeout)
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            # Trailers, if any, up to the empty line.
            while await _within(reader.readuntil(b"\r\n"), timeout) != b"\r\n":
                pass
            return
        yield await _within(reader.readexactly(size), timeout)
        await _within(reader.readexactly(2), timeout)


class Pool:
    """Idle keep-alive connections per replica endpoint (``http://host:port``)."""

    def __init__(self) -> None:
        self.idle: dict[str, list[_Connection]] = {}

    def release(self, endpoint: str, connection: _Connection) -> None:
        idle = self.idle.setdefault(endpoint, [])
        if len(idle) < IDLE_PER_ENDPOINT:
            idle.append(connection)
        else:
            connection.close()

    async def _connect(self, endpoint: str) -> _Connection:
        parts = urlsplit(endpoint)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(parts.hostname, parts.port or 80, limit=MAX_HEAD),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as exc:
            raise Refused(str(exc) or type(exc).__name__) from exc
        return _Connection(reader, writer)

    async def request(
        self,
        endpoint: str,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes] | None,
        *,
        read_timeout: float | None = None,
    ) -> Response:
        """Send the request; the answer's head once it came. Raises Refused (nothing
        answered), TimedOut (no head within ``read_timeout`` seconds; None: no bound) or
        UpstreamError."""
        head = _head(endpoint, method, path, headers, body)
        idle = self.idle.get(endpoint)
        while idle:
            connection = idle.pop()
            if not connection.usable():
                connection.close()
                continue
            try:
                return await self._exchange(
                    endpoint, connection, method, head, body, read_timeout=read_timeout
                )
            except _Stale:
                continue  # the replica closed it while idle: another, or a new one
        connection = await self._connect(endpoint)
        try:
            return await self._exchange(
                endpoint, connection, method, head, body, read_timeout=read_timeout
            )
        except _Stale as exc:
            # Not even a fresh connection got an answer: the replica is gone (a killed
            # container's port proxy accepts, then closes). It answered nothing, so the
            # request may go to another replica (_Stale only comes with a whole body).
            raise Refused("the replica closed the connection without answering") from exc

    async def _exchange(
        self,
        endpoint: str,
        connection: _Connection,
        method: str,
        head: bytes,
        body: bytes | AsyncIterator[bytes] | None,
        *,
        read_timeout: float | None,
    ) -> Response:
        writer, reader = connection.writer, connection.reader
        try:
            if isinstance(body, bytes) or body is None:
                writer.write(head + (body or b""))
            else:
                writer.write(head)
                async for chunk in body:
                    if chunk:
                        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        await writer.drain()
                writer.write(b"0\r\n\r\n")
            await writer.drain()
            status, headers = await _read_head(reader, read_timeout)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            # Closed or reset (a killed replica's kernel or its port proxy resets) before a
            # byte of its answer: a whole body may be sent again.
            connection.close()
            partial = isinstance(exc, asyncio.IncompleteReadError) and exc.partial
            if not partial and (isinstance(body, bytes) or body is None):
                raise _Stale from exc
            raise UpstreamError(f"the replica closed the connection ({exc!r})") from exc
        except (OSError, asyncio.LimitOverrunError, ValueError) as exc:
            connection.close()
            raise UpstreamError(str(exc) or type(exc).__name__) from exc
        except BaseException:
            connection.close()
            raise
        return Response(
            self,
            endpoint,
            connection,
            status,
            headers,
            head_only=method == "HEAD",
            read_timeout=read_timeout,
        )


async def _read_head(
    reader: asyncio.StreamReader, timeout: float | None
) -> tuple[int, list[tuple[bytes, bytes]]]:
    """The answer's status and headers (past any 100 Continue); TimedOut after ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                status, headers = _parse_head(await reader.readuntil(b"\r\n\r\n"))
                if status != 100:  # noqa: PLR2004 - an interim answer: the real one follows
                    return status, headers
    except TimeoutError as exc:
        raise TimedOut(f"no answer within {timeout:g} s") from exc


class _Stale(Exception):  # noqa: N818 - an event, not an error
    """A pooled connection the replica had closed: nothing was answered."""


def _head(
    endpoint: str,
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    body: bytes | AsyncIterator[bytes] | None,
) -> bytes:
    netloc = endpoint.split("//", 1)[-1].encode("latin-1")
    lines = [f"{method} {path} HTTP/1.1".encode("latin-1"), b"host: " + netloc]
    lines += [name + b": " + value for name, value in headers if name != b"content-length"]
    if isinstance(body, bytes):
        if body or method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
            lines.append(b"content-length: %d" % len(body))
    elif body is not None:
        lines.append(b"transfer-encoding: chunked")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _parse_head(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    lines = raw[:-4].split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise ValueError("not an HTTP/1.1 answer")
    status = int(rest[:3])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.strip(), value.strip()))
    return status, headers
