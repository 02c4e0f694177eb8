"""The websocket side of the JupyterLab proxy: a kernel's or terminal's websocket on a
notebook's own origin, carried to its Jupyter Server.

The handshake needs the origin's cookie, the notebook's own page as its Origin (another
notebook's page is another origin, perhaps of the same site) and the rule of
apps.notebooks.proxy.access. An open websocket joins its person's revocation group
(apps.core.revocation): when their membership ends or their role is lowered it checks again
and closes at once. It also checks again when the client sends after ``_RECHECK_EVERY``
seconds, as a backstop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import websockets
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import InMemoryChannelLayer

from apps.core.revocation import user_group
from apps.core.stream import register_server_loop
from apps.notebooks.origin import cookie_user, notebook_for_host
from apps.notebooks.proxy.access import Refusal, authorise, resolve
from apps.notebooks.proxy.asgi import (
    forwarded_cookies,
    from_own_page,
    header,
    origin_cookie,
    upstream_url,
)
from apps.teams.consumers import CLOSE_NOT_A_MEMBER

logger = logging.getLogger(__name__)

# How often an open websocket checks again, when its client sends, that its person may
# still open the notebook: a backstop to the revocation group, which closes it at once.
_RECHECK_EVERY = 30.0


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
        self.cookie = origin_cookie(self.scope)
        if notebook_for_host(header(self.scope, b"host")) != self.notebook_id or not (
            from_own_page(self.scope)
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
        url = "ws" + upstream_url(target.endpoint, self.scope)[4:]
        headers = {"Authorization": f"token {target.token}"}
        cookies = forwarded_cookies(header(self.scope, b"cookie"))
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
