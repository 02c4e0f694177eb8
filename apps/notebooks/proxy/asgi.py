"""What the notebook proxies and the launch read from an ASGI request, and how they answer.

The path ``/nb/<id>/...`` and its query as the browser sent them, headers, the notebook
origin's cookie, whether a request comes from the notebook's own page (its Origin header),
the cookies that go on to Jupyter (never Lattice's own, nor the origin's pass), and a short
plain-text answer.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.http.cookie import parse_cookie

from apps.notebooks.origin import COOKIE_NAME, SECURE_COOKIE_NAME, cookie_name, is_secure

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

PATH = re.compile(r"^/nb/(?P<id>\d+)(?P<rest>/.*)?$")


def lattice_cookies() -> set[str]:
    """Cookies the notebook never sees nor sets: Lattice's, and the notebook origin's pass."""
    return {
        settings.SESSION_COOKIE_NAME,
        settings.CSRF_COOKIE_NAME,
        "messages",
        COOKIE_NAME,
        SECURE_COOKIE_NAME,
    }


def forwarded_cookies(header: str) -> str:
    """The request's cookies minus Lattice's own."""
    ours = lattice_cookies()
    kept = []
    for part in header.split(";"):
        name = part.split("=", 1)[0].strip()
        if name and name not in ours:
            kept.append(part.strip())
    return "; ".join(kept)


def header(scope: dict[str, Any], wanted: bytes) -> str:
    for name, value in scope.get("headers", ()):
        if name.lower() == wanted:
            return str(value.decode("latin-1"))
    return ""


def origin_cookie(scope: dict[str, Any]) -> str | None:
    """The notebook origin's cookie, as the browser sent it."""
    return parse_cookie(header(scope, b"cookie")).get(cookie_name(secure=is_secure(scope)))


def from_own_page(scope: dict[str, Any]) -> bool:
    """Whether the request's Origin, if it has one, is the host it was sent to.
    Browsers always send one with a websocket and with a request that changes something;
    a client that sends none is not a page in a browser."""
    origin = header(scope, b"origin")
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == header(scope, b"host").lower()


def notebook_page(notebook_id: int) -> str:
    return f"/nb/{notebook_id}/"


def request_path(scope: dict[str, Any]) -> str:
    """The path and query as the browser sent them."""
    query = scope.get("query_string", b"").decode("latin-1")
    # "path" is decoded once already, and quoting it again leaves "%" as it is, so
    # "%2541" would reach Jupyter as "%41" ("A"). Some servers put the query string
    # in a websocket's raw_path too: never twice.
    raw = (scope.get("raw_path") or b"").split(b"?", 1)[0]
    if raw.startswith(b"/"):
        path = raw.decode("latin-1")
    else:
        path = quote(scope["path"], safe="/:@!$&'()*+,;=-._~")
    return path + (f"?{query}" if query else "")


def upstream_url(endpoint: str, scope: dict[str, Any]) -> str:
    return endpoint + request_path(scope)


async def plain_response(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    status: int,
    text: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A short text/plain answer that no cache keeps."""
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        },
    )
    await send({"type": "http.response.body", "body": body})
