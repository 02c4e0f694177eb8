"""Every chunk PUT route (the datasets' and models' API, the hosts' saves) has its body
streamed under ASGI (config/asgi.py STREAMED_PUTS), found from the URL resolver so that a
new chunk route cannot be left out: otherwise Django spools each chunk whole first."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.urls import URLPattern, URLResolver, get_resolver, reverse

from config.asgi import STREAMED_PUTS, _streams_body

if TYPE_CHECKING:
    from collections.abc import Iterator

# A chunk's own route ends at its index (its ".../target" sibling is a POST of JSON).
CHUNK_ROUTE = re.compile(r"chunks/<int:index>/?\$?$")


def _routes(
    patterns: list[Any], prefix: str = "", namespace: str = ""
) -> Iterator[tuple[str, str]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = namespace + (f"{pattern.namespace}:" if pattern.namespace else "")
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern) and pattern.name:
            yield namespace + pattern.name, prefix + str(pattern.pattern)


def chunk_routes() -> dict[str, str]:
    return {
        name: route
        for name, route in _routes(get_resolver().url_patterns)
        if CHUNK_ROUTE.search(route)
    }


def test_every_chunk_put_route_is_streamed() -> None:
    found = chunk_routes()

    assert {"api:upload_chunk", "api:model_upload_chunk", "hostsave_chunk"} <= set(found)
    assert set(found) == STREAMED_PUTS


def test_a_put_to_each_chunk_route_is_streamed_and_nothing_else_is() -> None:
    sha = "a" * 64
    for name in chunk_routes():
        args: list[Any] = [7, sha, 3] if name == "hostsave_chunk" else ["acme", 7, sha, 3]
        path = reverse(name, args=args)
        assert _streams_body({"method": "PUT", "path": path}) is True, path
        assert _streams_body({"method": "POST", "path": path}) is False, path
