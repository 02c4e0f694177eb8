"""The HTTP side of the JupyterLab proxy: every request on a notebook's own origin.

The ticket path redeems the launch's single-use ticket into the origin's cookie
(apps.notebooks.origin); every other request under ``/nb/<id>/`` needs that cookie and the
rule of apps.notebooks.proxy.access, and one that changes something must come from the
notebook's own page (its Origin header). It then goes to the notebook's Jupyter Server with
``Authorization: token <session token>`` added, bodies streamed both ways (never whole in
memory), through one pooled client per event loop; hop-by-hop headers and Lattice's cookies
stay behind, and the notebook cannot set them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import httpx
from channels.db import database_sync_to_async

from apps.notebooks.origin import (
    TICKET_PATH,
    cookie_header,
    cookie_value,
    is_secure,
    notebook_for_host,
    ticket_redeem,
)
from apps.notebooks.proxy.access import Refusal, Target, authorise
from apps.notebooks.proxy.asgi import (
    PATH,
    forwarded_cookies,
    from_own_page,
    header,
    lattice_cookies,
    notebook_page,
    origin_cookie,
    plain_response,
    upstream_url,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

logger = logging.getLogger(__name__)

_READS = ("GET", "HEAD", "OPTIONS")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "cookie",
    "origin",
}

# The longest silence (seconds) from Jupyter before or within an answer: a hung server must
# not hold a proxied request and its connection for ever. A download sends far more often;
# kernels and terminals speak over websockets (apps.notebooks.proxy.websocket), not here.
READ_TIMEOUT = 300.0

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=5.0, read=READ_TIMEOUT, write=60.0, pool=10.0),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
    return client


class NotebookHTTPProxy:
    """ASGI app for every HTTP request on a notebook's origin (``nb-<id>.<domain>``)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        notebook_id = notebook_for_host(header(scope, b"host"))
        if notebook_id is None:
            await plain_response(send, 404, "No such notebook.")
            return
        if scope["path"] == TICKET_PATH:
            await self._enter(scope, send, notebook_id)
            return
        match = PATH.match(scope["path"])
        if scope["path"] != "/" and (match is None or match["id"] != str(notebook_id)):
            await plain_response(send, 404, "No such notebook.")
            return
        if match is None or not match["rest"]:
            redirect = notebook_page(notebook_id).encode()
            await plain_response(send, 308, "", [(b"location", redirect)])
            return
        if scope["method"] not in _READS and not from_own_page(scope):
            await plain_response(send, 403, "Refused: this request came from another page.")
            return
        target = await database_sync_to_async(authorise)(origin_cookie(scope), notebook_id)
        if isinstance(target, Refusal):
            await plain_response(send, target.status, target.message)
            return
        await self._forward(scope, receive, send, target)

    async def _enter(self, scope: dict[str, Any], send: Any, notebook_id: int) -> None:
        """Redeem the launch's ticket: set this origin's cookie and go on to the notebook."""
        if scope["method"] not in ("GET", "HEAD"):
            await plain_response(send, 405, "", [(b"allow", b"GET, HEAD")])
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        ticket = query.get("ticket", [""])[0]
        admission = await database_sync_to_async(ticket_redeem)(ticket, notebook_id=notebook_id)
        if admission is None:
            await plain_response(
                send,
                403,
                "This link to the notebook has expired or was used already: "
                "open the notebook again from its page in Lattice.",
            )
            return
        value = cookie_value(user=admission.user, notebook_id=notebook_id, grant=admission.grant)
        await plain_response(
            send,
            302,
            "On to the notebook.",
            [
                (b"location", admission.path.encode("latin-1")),
                (b"set-cookie", cookie_header(value, secure=is_secure(scope))),
                (b"referrer-policy", b"no-referrer"),
            ],
        )

    async def _forward(
        self, scope: dict[str, Any], receive: Any, send: Any, target: Target
    ) -> None:
        headers = _request_headers(scope, target)
        has_body = scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE") or any(
            n == "content-length" for n, _ in headers
        )
        request = _client().build_request(
            scope["method"],
            upstream_url(target.endpoint, scope),
            headers=headers,
            content=_body(receive) if has_body else None,
        )
        try:
            response = await _client().send(request, stream=True)
        except _ClientGone:
            return  # nobody to answer
        except httpx.ReadTimeout:
            logger.info("notebook proxy to %s: no answer in %s s", target.endpoint, READ_TIMEOUT)
            await plain_response(
                send,
                504,
                f"The notebook's server did not answer within {READ_TIMEOUT:g} s. "
                "If it stays so, restart the notebook.",
            )
            return
        except httpx.HTTPError as exc:
            logger.info("notebook proxy to %s failed: %s", target.endpoint, exc)
            await plain_response(
                send, 502, "The notebook's server did not answer. Try again in a moment."
            )
            return
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": _response_headers(response),
                },
            )
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except httpx.ReadTimeout:
            # Silent mid-answer: the answer stays unfinished and the server closes the
            # connection, so the browser sees it cut short.
            logger.info("notebook proxy to %s: the answer stopped", target.endpoint)
        finally:
            await response.aclose()


class _ClientGone(Exception):  # noqa: N818 - an event, not an error
    """The browser went away before it had sent the whole body."""


async def _body(receive: Any) -> AsyncIterator[bytes]:
    """The request body as the browser sends it, chunk by chunk (never all in memory)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # Ending here would hand Jupyter a short body as if it were whole.
            raise _ClientGone
        yield message.get("body", b"")
        if not message.get("more_body"):
            return


def _request_headers(scope: dict[str, Any], target: Target) -> list[tuple[str, str]]:
    """The browser's headers, less hop-by-hop ones and Lattice's cookies, plus the token."""
    headers = []
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name == "cookie":
            cookies = forwarded_cookies(raw_value.decode("latin-1"))
            if cookies:
                headers.append(("cookie", cookies))
        elif name not in _HOP_BY_HOP:
            headers.append((name, raw_value.decode("latin-1")))
    headers.append(("authorization", f"token {target.token}"))
    return headers


def _response_headers(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    """The notebook's headers, less hop-by-hop ones and any attempt to set Lattice's cookies."""
    ours = {name.encode("latin-1") for name in lattice_cookies()}
    out = []
    for name, value in response.headers.raw:
        lower = name.lower()
        if lower in (b"connection", b"keep-alive", b"transfer-encoding"):
            continue
        if lower == b"set-cookie" and value.split(b"=", 1)[0].strip() in ours:
            continue
        out.append((name, value))
    return out
