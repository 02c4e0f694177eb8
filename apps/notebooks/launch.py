"""The launch: ``/nb/<id>/<path>`` on Lattice's origin, the way over to a notebook's own.

JupyterLab is never served here (apps.notebooks.origin). Signed in with Lattice's session,
a person who may open the notebook (``proxy.access.resolve``: the same rules as every request
on the notebook's origin) is redirected to that origin with a single-use ticket for
``<path>``; everyone else is refused here as they would be there (a visitor is sent to
log in, an outsider gets 404, a viewer 403, a stopped notebook 503).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from channels.db import database_sync_to_async

from apps.notebooks.origin import TICKET_PATH, is_secure, notebook_origin, ticket_issue
from apps.notebooks.proxy.access import Refusal, resolve
from apps.notebooks.proxy.asgi import PATH, header, notebook_page, plain_response, request_path


class NotebookLaunch:
    """ASGI app for /nb/<id>/... on Lattice's origin (in Channels' AuthMiddlewareStack for
    the user): the way over to the notebook's own origin, never JupyterLab itself."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        match = PATH.match(scope["path"])
        if match is None:
            await plain_response(send, 404, "No such notebook.")
            return
        notebook_id = int(match["id"])
        if not match["rest"]:
            redirect = notebook_page(notebook_id).encode()
            await plain_response(send, 308, "", [(b"location", redirect)])
            return
        if scope["method"] not in ("GET", "HEAD"):
            await plain_response(
                send,
                405,
                "JupyterLab is served on the notebook's own address: open it from its page.",
                [(b"allow", b"GET, HEAD")],
            )
            return
        user = scope.get("user")
        target = await database_sync_to_async(resolve)(user, notebook_id)
        if isinstance(target, Refusal):
            await self._refuse(scope, send, target)
            return
        session = scope.get("session")
        ticket = await database_sync_to_async(ticket_issue)(
            user=user,
            notebook_id=notebook_id,
            path=request_path(scope),
            session_key=getattr(session, "session_key", None),
        )
        origin = notebook_origin(
            notebook_id, lattice_host=header(scope, b"host"), secure=is_secure(scope)
        )
        location = f"{origin}{TICKET_PATH}?{urlencode({'ticket': ticket})}"
        await plain_response(
            send,
            302,
            "On to the notebook.",
            [(b"location", location.encode("latin-1")), (b"referrer-policy", b"no-referrer")],
        )

    async def _refuse(self, scope: dict[str, Any], send: Any, refusal: Refusal) -> None:
        if refusal.status == 401 and scope["method"] in ("GET", "HEAD"):  # noqa: PLR2004
            login = f"/accounts/login/?next={quote(scope['path'])}"
            await plain_response(send, 302, "Log in first.", [(b"location", login.encode())])
            return
        status = 404 if refusal.status == 401 else refusal.status  # noqa: PLR2004
        await plain_response(send, status, refusal.message)
