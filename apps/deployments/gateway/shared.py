"""What the gateway reads from the shared cache on every request, in one round trip: the
route and credential generations (apps.deployments.routing) and the caller's count for
the rate limit's minute.

With Django's Redis cache (production) it is one pipelined MGET + INCR + EXPIRE on one
connection per event loop, spoken directly in Redis's protocol (RESP): requests in flight
at once share the connection, and Redis answers in order. redis-py's asyncio client did
the same at several times the CPU (measured in bench/deployments_gateway.py). When that
connection fails, or the URL is not ``redis://``, Django's cache API answers instead (in
a thread). With any other cache (locmem in tests and dev: this process's memory) Django's
cache API is called directly.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any
from urllib.parse import unquote, urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache

from apps.deployments.routing import generations

logger = logging.getLogger(__name__)
_REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"


class RespError(Exception):
    """Redis refused a command, or the connection failed."""


def _command(*parts: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        raw = part if isinstance(part, bytes) else str(part).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


async def _reply(reader: asyncio.StreamReader) -> Any:
    line = await reader.readuntil(b"\r\n")
    kind, rest = line[:1], line[1:-2]
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        return (await reader.readexactly(size + 2))[:-2]
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [await _reply(reader) for _ in range(size)]
    if kind == b"+":
        return rest
    if kind == b"-":
        return RespError(rest.decode("latin-1"))
    raise RespError(f"not a Redis reply: {line[:40]!r}")


class RespConnection:
    """One pipelined connection to Redis: each ``send`` writes its commands at once and waits
    for as many replies, in order."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 6379
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.db = int(parts.path.strip("/") or 0)
        self.writer: asyncio.StreamWriter | None = None
        self.waiting: collections.deque[tuple[int, list[Any], asyncio.Future[list[Any]]]] = (
            collections.deque()
        )
        self.lock = asyncio.Lock()
        self.reading: asyncio.Task[None] | None = None

    async def _open(self) -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        hello = []
        if self.password is not None:
            auth = (self.username, self.password) if self.username else (self.password,)
            hello.append(_command("AUTH", *auth))
        if self.db:
            hello.append(_command("SELECT", self.db))
        if hello:
            writer.write(b"".join(hello))
            for _ in hello:
                answer = await _reply(reader)
                if isinstance(answer, RespError):
                    writer.close()
                    raise answer
        self.reading = asyncio.get_running_loop().create_task(self._read(reader, writer))
        return writer

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Hand each reply to the oldest send still waiting (Redis answers in order)."""
        try:
            while True:
                reply = await _reply(reader)
                if not self.waiting:
                    self._fail(RespError("a reply nobody asked for"), writer)
                    return
                count, got, future = self.waiting[0]
                got.append(reply)
                if len(got) == count:
                    self.waiting.popleft()
                    if not future.done():
                        future.set_result(got)
        except (OSError, asyncio.IncompleteReadError, RespError, ValueError) as exc:
            self._fail(RespError(str(exc) or type(exc).__name__), writer)

    def _fail(self, error: Exception, writer: asyncio.StreamWriter) -> None:
        if self.writer is writer:
            self.writer = None
        writer.close()
        while self.waiting:
            _, _, future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)

    async def send(self, commands: list[bytes]) -> list[Any]:
        writer = self.writer
        if writer is None or writer.is_closing():
            async with self.lock:
                if self.writer is None or self.writer.is_closing():
                    self.writer = await self._open()
                writer = self.writer
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.waiting.append((len(commands), [], future))
        writer.write(b"".join(commands))
        return await future


_connections: dict[asyncio.AbstractEventLoop, RespConnection] = {}


def _redis_url() -> str | None:
    """The Redis URL when Django's cache is Redis at a redis:// address, else None."""
    backend = settings.CACHES["default"]
    if backend["BACKEND"] != _REDIS_CACHE:
        return None
    location = backend["LOCATION"]
    url = str(location[0] if isinstance(location, list | tuple) else location)
    return url if url.startswith("redis://") else None


def _shared_state_sync(
    keys: list[str], rate_key: str | None, window: int
) -> tuple[dict[str, int], int]:
    found = generations(keys)
    if rate_key is None:
        return found, 0
    cache.add(rate_key, 0, timeout=window * 2)
    return found, int(cache.incr(rate_key))


async def shared_state(
    keys: list[str], rate_key: str | None, *, window: int
) -> tuple[dict[str, int], int]:
    """The generations of ``keys`` and ``rate_key``'s count after this request (0 when no
    rate key is given)."""
    backend = settings.CACHES["default"]["BACKEND"]
    url = _redis_url()
    if url is None:
        if backend == _REDIS_CACHE:  # Redis at another kind of address: through Django
            return await sync_to_async(_shared_state_sync, thread_sensitive=False)(
                keys, rate_key, window
            )
        return _shared_state_sync(keys, rate_key, window)
    loop = asyncio.get_running_loop()
    connection = _connections.get(loop)
    if connection is None:
        connection = _connections[loop] = RespConnection(url)
    commands = [_command("MGET", *(cache.make_key(k) for k in keys))]
    if rate_key is not None:
        raw = cache.make_key(rate_key)
        commands += [_command("INCR", raw), _command("EXPIRE", raw, window * 2, "NX")]
    try:
        replies = await connection.send(commands)
    except (OSError, RespError) as exc:
        logger.warning("the gateway's Redis connection failed (%s): through Django's cache", exc)
        return await sync_to_async(_shared_state_sync, thread_sensitive=False)(
            keys, rate_key, window
        )
    values = replies[0]
    if isinstance(values, RespError) or any(v is None for v in values):
        found = await sync_to_async(generations, thread_sensitive=False)(keys)
    else:
        found = {k: int(v) for k, v in zip(keys, values, strict=True)}
    count = replies[1] if rate_key is not None else 0
    return found, count if isinstance(count, int) else 0
