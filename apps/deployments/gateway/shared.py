"""What the gateway reads from the shared cache on every request, in one round trip: the
route and credential generations (apps.deployments.routing) and the caller's count for
the rate limit's minute.

With Django's Redis cache (production) it is one pipelined MGET + INCR + EXPIRE on an
asyncio Redis client per event loop: no thread hop, no Django cache call. With any other
cache (locmem in tests and dev: in this process's memory) Django's cache API is called
directly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.core.cache import cache

from apps.deployments.routing import generations

_clients: dict[asyncio.AbstractEventLoop, Any] = {}


def _redis_location() -> str | None:
    backend = settings.CACHES["default"]
    if backend["BACKEND"] != "django.core.cache.backends.redis.RedisCache":
        return None
    location = backend["LOCATION"]
    return str(location[0] if isinstance(location, list | tuple) else location)


def _client() -> Any:
    import redis.asyncio

    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = redis.asyncio.Redis.from_url(
            str(_redis_location()), max_connections=64
        )
    return client


async def shared_state(
    keys: list[str], rate_key: str | None, *, window: int
) -> tuple[dict[str, int], int]:
    """The generations of ``keys`` and ``rate_key``'s count after this request (0 when no
    rate key is given)."""
    if _redis_location() is None:
        found = generations(keys)
        if rate_key is None:
            return found, 0
        cache.add(rate_key, 0, timeout=window * 2)
        return found, int(cache.incr(rate_key))
    pipe = _client().pipeline(transaction=False)
    pipe.mget([cache.make_key(k) for k in keys])
    if rate_key is not None:
        raw = cache.make_key(rate_key)
        pipe.incr(raw)
        pipe.expire(raw, window * 2, nx=True)
    answers = await pipe.execute()
    values = answers[0]
    if any(v is None for v in values):
        from asgiref.sync import sync_to_async

        found = await sync_to_async(generations, thread_sensitive=False)(keys)
    else:
        found = {k: int(v) for k, v in zip(keys, values, strict=True)}
    return found, int(answers[1]) if rate_key is not None else 0
