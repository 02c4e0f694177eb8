"""The JupyterLab proxy: every request and websocket on a notebook's own origin.

A notebook's JupyterLab is served on an origin of its own, ``nb-<id>.<user-content
domain>`` (apps.notebooks.origin), never on Lattice's: a script in a notebook's output
must not act as the person who opened it. People arrive from the launch on Lattice's
origin (apps.notebooks.launch) with a single-use ticket; the proxy redeems it into the
origin's own cookie, and on every request and websocket handshake checks that cookie,
then ``resolve``: members of the notebook's team whose role may open notebooks (viewers
may not: docs/permissions.md); anyone else gets what a missing notebook gets, 404. A
request that changes something must come from the notebook's own page (its Origin
header), and so must every websocket: another notebook's page is another origin,
perhaps of the same site.

Lattice talks to the notebook's Jupyter Server, adding ``Authorization: token <session
token>`` to every request. The token never reaches the browser (not in a URL, not in a
page, not in history). Lattice's cookies and the notebook origin's own are taken out of
what goes to the notebook, and a notebook cannot set them.

An open websocket joins its person's revocation group (apps.core.revocation): when their
membership ends or their role is lowered it checks again and closes at once. It also
checks again when the client sends after ``_RECHECK_EVERY`` seconds, as a backstop.

The notebook is found by id without a team in the URL (the route is short on purpose:
JupyterLab builds its URLs from it); the team comes from the notebook row, read through
``unscoped()`` and then checked against the membership.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import websockets
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import InMemoryChannelLayer
from django.conf import settings
from django.http.cookie import parse_cookie

from apps.core.revocation import user_group
from apps.core.stream import register_server_loop
from apps.notebooks.models import Notebook, NotebookSession, Status
from apps.notebooks.origin import (
    COOKIE_NAME,
    SECURE_COOKIE_NAME,
    TICKET_PATH,
    cookie_header,
    cookie_name,
    cookie_user,
    cookie_value,
    is_secure,
    notebook_for_host,
    ticket_redeem,
)
from apps.teams.consumers import CLOSE_NOT_A_MEMBER
from apps.teams.permissions import role_allows
from apps.teams.selectors import role_in

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

logger = logging.getLogger(__name__)

# How often an open websocket checks again, when its client sends, that its person may
# still open the notebook: a backstop to the revocation group, which closes it at once.
_RECHECK_EVERY = 30.0
PATH = re.compile(r"^/nb/(?P<id>\d+)(?P<rest>/.*)?$")
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
NOT_LET_IN = (
    "This browser has not been let in to this notebook here, or its pass has ended: "
    "open the notebook from its page in Lattice."
)


def _lattice_cookies() -> set[str]:
    """Cookies the notebook never sees nor sets: Lattice's, and the notebook origin's pass."""
    return {
        settings.SESSION_COOKIE_NAME,
        settings.CSRF_COOKIE_NAME,
        "messages",
        COOKIE_NAME,
        SECURE_COOKIE_NAME,
    }


def _forwarded_cookies(header: str) -> str:
    """The request's cookies minus Lattice's own."""
    ours = _lattice_cookies()
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


def _origin_cookie(scope: dict[str, Any]) -> str | None:
    """The notebook origin's cookie, as the browser sent it."""
    return parse_cookie(header(scope, b"cookie")).get(cookie_name(secure=is_secure(scope)))


def _from_own_page(scope: dict[str, Any]) -> bool:
    """Whether the request's Origin, if it has one, is the host it was sent to.
    Browsers always send one with a websocket and with a request that changes something;
    a client that sends none is not a page in a browser."""
    origin = header(scope, b"origin")
    if not origin:
        return True
    return urlsplit(origin).netloc.lower() == header(scope, b"host").lower()


@dataclass(frozen=True)
class Target:
    endpoint: str  # http://127.0.0.1:PORT
    token: str
    session_id: int
    team_id: int


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def resolve(user: Any, notebook_id: int) -> Target | Refusal:
    """Where to send ``user``'s request for notebook ``notebook_id``, or why not."""
    if user is None or not user.is_authenticated:
        return Refusal(401, "Log in to open notebooks.")
    # The team comes from the row here; the membership check below is the gate.
    notebook = Notebook.objects.unscoped().filter(pk=notebook_id, deleted_at__isnull=True).first()
    role = role_in(user_id=user.pk, team_id=notebook.team_id) if notebook else None
    if notebook is None or role is None:
        return Refusal(404, "No such notebook.")
    if not role_allows(role, "notebooks.open"):
        return Refusal(403, "Viewers see a notebook's status and logs but cannot open it.")
    session = (
        NotebookSession.objects.for_team(notebook.team_id)
        .filter(notebook=notebook, ended_at__isnull=True, status=Status.RUNNING)
        .exclude(endpoint="")
        .first()
    )
    if session is None:
        return Refusal(503, "This notebook is not running. Start it from its page in Lattice.")
    return Target(session.endpoint, session.jupyter_token, session.pk, notebook.team_id)


def authorise(cookie: str | None, notebook_id: int) -> Target | Refusal:
    """``resolve`` for the person a notebook origin's cookie names; refused without one."""
    user = cookie_user(cookie, notebook_id=notebook_id)
    if user is None:
        return Refusal(403, NOT_LET_IN)
    return resolve(user, notebook_id)


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


def _upstream_url(endpoint: str, scope: dict[str, Any]) -> str:
    return endpoint + request_path(scope)


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
        if scope["method"] not in _READS and not _from_own_page(scope):
            await plain_response(send, 403, "Refused: this request came from another page.")
            return
        target = await database_sync_to_async(authorise)(_origin_cookie(scope), notebook_id)
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
            _upstream_url(target.endpoint, scope),
            headers=headers,
            content=_body(receive) if has_body else None,
        )
        try:
            response = await _client().send(request, stream=True)
        except _ClientGone:
            return  # nobody to answer
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
    """Carries a kernel's (or terminal's) websocket on a notebook's origin to its Jupyter
    Server, for as long as its person may open the notebook."""

    upstream: Any = None
    pump: asyncio.Task[None] | None = None
    group: str | None = None
    team_id: int | None = None
    checked_at = 0.0

    async def connect(self) -> None:
        self.notebook_id = int(self.scope["url_route"]["kwargs"]["notebook_id"])
        self.cookie = _origin_cookie(self.scope)
        if notebook_for_host(header(self.scope, b"host")) != self.notebook_id or not (
            _from_own_page(self.scope)
        ):
            await self.close()
            return
        user = await database_sync_to_async(cookie_user)(self.cookie, notebook_id=self.notebook_id)
        if user is None:
            await self.close()
            return
        # Join the person's group before checking their membership: a removal committed
        # after the check below is heard, one committed before it is seen.
        if isinstance(self.channel_layer, InMemoryChannelLayer):
            register_server_loop(asyncio.get_running_loop())
        self.group = user_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        target = await database_sync_to_async(resolve)(user, self.notebook_id)
        if isinstance(target, Refusal):
            await self.close()
            return
        self.team_id = target.team_id
        url = "ws" + _upstream_url(target.endpoint, self.scope)[4:]
        headers = {"Authorization": f"token {target.token}"}
        cookies = _forwarded_cookies(header(self.scope, b"cookie"))
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

    async def _may_stay(self) -> bool:
        self.checked_at = time.monotonic()
        target = await database_sync_to_async(authorise)(self.cookie, self.notebook_id)
        return not isinstance(target, Refusal)

    async def _cut_off(self) -> None:
        """Stop carrying anything either way, then close the browser's end."""
        if self.pump is not None:
            self.pump.cancel()
        if self.upstream is not None:
            upstream, self.upstream = self.upstream, None
            with contextlib.suppress(Exception):
                await upstream.close()
        await self.close(code=CLOSE_NOT_A_MEMBER)

    async def access_changed(self, event: dict[str, Any]) -> None:
        """The person's membership or role changed (apps.core.revocation), in this notebook's
        team or in every team (signed out, say): check now."""
        if event.get("team") not in (None, self.team_id):
            return
        if self.upstream is not None and not await self._may_stay():
            await self._cut_off()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.upstream is None:
            return
        if time.monotonic() - self.checked_at > _RECHECK_EVERY and not await self._may_stay():
            await self._cut_off()
            return
        try:
            await self.upstream.send(bytes_data if bytes_data is not None else text_data or "")
        except websockets.WebSocketException:
            await self.close()

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.pump is not None:
            self.pump.cancel()
        if self.upstream is not None:
            with contextlib.suppress(Exception):
                await self.upstream.close()
