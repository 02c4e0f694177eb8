"""The JupyterLab proxy: ``/nb/<id>/...`` over HTTP and websockets, for team members only.

The browser talks to Lattice; Lattice talks to the notebook's Jupyter Server,
adding ``Authorization: token <session token>`` to every request. The token
never reaches the browser (not in a URL, not in a page, not in history), so
the only way into a notebook is through this proxy, which checks on every
request and every websocket handshake that the signed-in person is a member
of the notebook's team whose role may open notebooks (viewers may not:
docs/permissions.md). Anyone else gets what a missing notebook gets: 404
(a visitor is sent to log in).

Lattice's own cookies (session, CSRF, messages) are taken out of what goes to
the notebook, and a notebook cannot set them: code in a notebook must not
see or replace a teammate's Lattice session.

The notebook is found by id without a team in the URL (the route is short on
purpose: JupyterLab builds its URLs from it); the team comes from the notebook
row, read through ``unscoped()`` and then checked against the membership.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import websockets
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from apps.notebooks.models import Notebook, NotebookSession, Status
from apps.teams.permissions import role_allows
from apps.teams.selectors import membership_in

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

logger = logging.getLogger(__name__)

# How often an open websocket checks again that its person may still open the notebook.
_RECHECK_EVERY = 30.0
PATH = re.compile(r"^/nb/(?P<id>\d+)(?P<rest>/.*)?$")
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


def _lattice_cookies() -> set[str]:
    return {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, "messages"}


def _forwarded_cookies(header: str) -> str:
    """The request's cookies minus Lattice's own."""
    ours = _lattice_cookies()
    kept = []
    for part in header.split(";"):
        name = part.split("=", 1)[0].strip()
        if name and name not in ours:
            kept.append(part.strip())
    return "; ".join(kept)


@dataclass(frozen=True)
class Target:
    endpoint: str  # http://127.0.0.1:PORT
    token: str
    session_id: int


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def resolve(user: Any, notebook_id: int) -> Target | Refusal:
    """Where to send ``user``'s request for notebook ``notebook_id``, or why not."""
    if user is None or not user.is_authenticated:
        return Refusal(401, "Log in to open notebooks.")
    # The team comes from the row here; the membership check below is the gate.
    notebook = (
        Notebook.objects.unscoped()
        .select_related("team")
        .filter(pk=notebook_id, deleted_at__isnull=True)
        .first()
    )
    membership = membership_in(user, notebook.team.slug) if notebook else None
    if notebook is None or membership is None:
        return Refusal(404, "No such notebook.")
    if not role_allows(membership.role, "notebooks.open"):
        return Refusal(403, "Viewers see a notebook's status and logs but cannot open it.")
    session = (
        NotebookSession.objects.for_team(notebook.team_id)
        .filter(notebook=notebook, ended_at__isnull=True, status=Status.RUNNING)
        .exclude(endpoint="")
        .first()
    )
    if session is None:
        return Refusal(503, "This notebook is not running. Start it from its page in Lattice.")
    return Target(session.endpoint, session.jupyter_token, session.pk)


def _notebook_page(notebook_id: int) -> str:
    return f"/nb/{notebook_id}/"


# --- HTTP ---------------------------------------------------------------------------------

_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=5.0, read=None, write=60.0, pool=10.0),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
    return client


async def _plain(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    status: int,
    text: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
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


class NotebookHTTPProxy:
    """ASGI app for HTTP under /nb/ (wrapped in Channels' AuthMiddlewareStack for the user)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        match = PATH.match(scope["path"])
        if match is None:
            await _plain(send, 404, "No such notebook.")
            return
        notebook_id = int(match["id"])
        if not match["rest"]:
            await _plain(send, 308, "", [(b"location", _notebook_page(notebook_id).encode())])
            return
        target = await database_sync_to_async(resolve)(scope.get("user"), notebook_id)
        if isinstance(target, Refusal):
            await self._refuse(scope, send, target)
            return
        await self._forward(scope, receive, send, target)

    async def _refuse(self, scope: dict[str, Any], send: Any, refusal: Refusal) -> None:
        if refusal.status == 401 and scope["method"] in ("GET", "HEAD"):  # noqa: PLR2004
            login = f"/accounts/login/?next={quote(scope['path'])}"
            await _plain(send, 302, "Log in first.", [(b"location", login.encode())])
            return
        status = 404 if refusal.status == 401 else refusal.status  # noqa: PLR2004
        await _plain(send, status, refusal.message)

    async def _forward(
        self, scope: dict[str, Any], receive: Any, send: Any, target: Target
    ) -> None:
        headers = _request_headers(scope, target)
        has_body = scope["method"] not in ("GET", "HEAD", "OPTIONS", "DELETE") or any(
            n == "content-length" for n, _ in headers
        )
        request = _client().build_request(
            scope["method"],
            _upstream_url(target.endpoint, scope),
            headers=headers,
            content=_body(receive) if has_body else None,
        )
        try:
            response = await _client().send(request, stream=True)
        except httpx.HTTPError as exc:
            logger.info("notebook proxy to %s failed: %s", target.endpoint, exc)
            await _plain(send, 502, "The notebook's server did not answer. Try again in a moment.")
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
        finally:
            await response.aclose()


def _upstream_url(endpoint: str, scope: dict[str, Any]) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    # The path as the browser sent it: "path" is decoded once already, and quoting it
    # again leaves "%" as it is, so "%2541" would reach Jupyter as "%41" ("A").
    # Some servers put the query string in a websocket's raw_path too: never twice.
    raw = (scope.get("raw_path") or b"").split(b"?", 1)[0]
    if raw.startswith(b"/"):
        path = raw.decode("latin-1")
    else:
        path = quote(scope["path"], safe="/:@!$&'()*+,;=-._~")
    return endpoint + path + (f"?{query}" if query else "")


async def _body(receive: Any) -> AsyncIterator[bytes]:
    """The request body as the browser sends it, chunk by chunk (never all in memory)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        yield message.get("body", b"")
        if not message.get("more_body"):
            return


def _request_headers(scope: dict[str, Any], target: Target) -> list[tuple[str, str]]:
    """The browser's headers, less hop-by-hop ones and Lattice's cookies, plus the token."""
    headers = []
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        if name == "cookie":
            cookies = _forwarded_cookies(raw_value.decode("latin-1"))
            if cookies:
                headers.append(("cookie", cookies))
        elif name not in _HOP_BY_HOP:
            headers.append((name, raw_value.decode("latin-1")))
    headers.append(("authorization", f"token {target.token}"))
    return headers


def _response_headers(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    """The notebook's headers, less hop-by-hop ones and any attempt to set Lattice's cookies."""
    ours = {name.encode("latin-1") for name in _lattice_cookies()}
    out = []
    for name, value in response.headers.raw:
        lower = name.lower()
        if lower in (b"connection", b"keep-alive", b"transfer-encoding"):
            continue
        if lower == b"set-cookie" and value.split(b"=", 1)[0].strip() in ours:
            continue
        out.append((name, value))
    return out


# --- websockets ---------------------------------------------------------------------------


class NotebookWebsocketProxy(AsyncWebsocketConsumer):
    """Carries a kernel's (or terminal's) websocket to the notebook's Jupyter Server."""

    upstream: Any = None
    pump: asyncio.Task[None] | None = None
    checked_at = 0.0

    async def connect(self) -> None:
        notebook_id = int(self.scope["url_route"]["kwargs"]["notebook_id"])
        target = await database_sync_to_async(resolve)(self.scope.get("user"), notebook_id)
        if isinstance(target, Refusal):
            await self.close()
            return
        url = "ws" + _upstream_url(target.endpoint, self.scope)[4:]
        headers = {"Authorization": f"token {target.token}"}
        for raw_name, raw_value in self.scope["headers"]:
            if raw_name.lower() == b"cookie":
                cookies = _forwarded_cookies(raw_value.decode("latin-1"))
                if cookies:
                    headers["Cookie"] = cookies
        subprotocols = self.scope.get("subprotocols") or None
        try:
            self.upstream = await websockets.connect(
                url,
                additional_headers=headers,
                subprotocols=subprotocols,
                max_size=None,
                # Jupyter completes a kernel's handshake once the kernel is up: seconds when busy.
                open_timeout=60,
                ping_interval=None,
                compression=None,
            )
        except (OSError, websockets.WebSocketException, TimeoutError) as exc:
            logger.info("notebook websocket to %s failed: %s", target.endpoint, exc)
            await self.close()
            return
        self.checked_at = time.monotonic()
        await self.accept(subprotocol=self.upstream.subprotocol)
        self.pump = asyncio.create_task(self._from_upstream())

    async def _from_upstream(self) -> None:
        try:
            async for message in self.upstream:
                if isinstance(message, bytes):
                    await self.send(bytes_data=message)
                else:
                    await self.send(text_data=message)
        except websockets.WebSocketException:
            pass
        with contextlib.suppress(Exception):
            await self.close()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.upstream is None:
            return
        if time.monotonic() - self.checked_at > _RECHECK_EVERY:
            # Someone removed from the team (or made a viewer) stops running code here.
            self.checked_at = time.monotonic()
            notebook_id = int(self.scope["url_route"]["kwargs"]["notebook_id"])
            target = await database_sync_to_async(resolve)(self.scope.get("user"), notebook_id)
            if isinstance(target, Refusal):
                await self.close()
                return
        try:
            await self.upstream.send(bytes_data if bytes_data is not None else text_data or "")
        except websockets.WebSocketException:
            await self.close()

    async def disconnect(self, code: int) -> None:
        if self.pump is not None:
            self.pump.cancel()
        if self.upstream is not None:
            with contextlib.suppress(Exception):
                await self.upstream.close()
