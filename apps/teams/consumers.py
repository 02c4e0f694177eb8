"""The team base class for websocket consumers (/ws/teams/<team_slug>/...).

Like the page and API base classes (apps.teams.scope, apps.teams.api.base): the
team comes from the URL, through the connecting user's membership; a visitor or an
outsider is refused at the handshake (the client sees the connection rejected,
learning nothing about the team); a member whose role lacks ``permission`` is
refused too. The consumer then runs in the team's scope, so database calls made
through ``database_sync_to_async`` are scoped (asgiref carries the context over).
Subclasses implement ``team_connected`` and ``team_receive_json``; they may
not override ``connect``, ``receive_json``, ``access_changed``,
``access_still_held``, ``dispatch`` or ``websocket_disconnect``.

Revocation is immediate (ARCHITECTURE decision 12, apps.core.revocation): the
consumer joins the user's group before it checks the membership, so a change
committed meanwhile is heard, not missed. On ``access.changed`` it checks the
membership and the permission again and closes with ``CLOSE_NOT_A_MEMBER`` when
they no longer hold, without waiting for the client to send anything; each
message from the client is checked the same way. Once closed so, nothing more
is handled but the disconnect: no stream message reaches the client after it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer

from apps.core.revocation import user_group
from apps.core.sessions import session_signs_in
from apps.core.stream import register_server_loop
from apps.core.tenancy import Sealed, team_scope
from apps.teams.permissions import role_allows
from apps.teams.selectors import membership_in

# Close codes in the 4000 range are the application's own (RFC 6455).
CLOSE_NOT_A_MEMBER = 4404


class TeamConsumer(Sealed, AsyncJsonWebsocketConsumer):
    permission = "team.view"
    team: Any
    membership: Any

    _SEALED = (
        "connect",
        "receive",
        "receive_json",
        "websocket_connect",
        "websocket_receive",
        "websocket_disconnect",
        "access_changed",
        "access_still_held",
        "dispatch",
    )
    _SEALED_HINT = "Implement team_connected, team_receive_json and disconnect instead."
    _user_group: str | None = None
    _session_key: str | None = None
    _access_lost = False

    async def _current_membership(self) -> Any:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return None
        slug = self.scope["url_route"]["kwargs"]["team_slug"]
        membership = await database_sync_to_async(membership_in)(user, slug)
        if membership is None or not role_allows(membership.role, self.permission):
            return None
        return membership

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            if isinstance(self.channel_layer, InMemoryChannelLayer):
                # Sync publishers (the teams services) hand their sends to this loop.
                register_server_loop(asyncio.get_running_loop())
            self._user_group = user_group(user.pk)
            await self.channel_layer.group_add(self._user_group, self.channel_name)
        session = self.scope.get("session")
        self._session_key = getattr(session, "session_key", None)
        membership = await self._current_membership()
        if membership is None:
            await self._leave_user_group()
            await self.close()
            return
        self.team = membership.team
        self.membership = membership
        # The consumer's task keeps this context for its whole life. Hold the
        # context manager: if it were garbage-collected its exit would run.
        self._team_scope: Any = team_scope(self.team)
        self._team_scope.__enter__()
        await self.accept()
        await self.team_connected()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if await self.access_still_held():
            await self.team_receive_json(content)

    async def access_changed(self, event: dict[str, Any]) -> None:
        """The teams app says this user's access changed (in this team, or in every team)."""
        team = getattr(self, "team", None)
        if team is None or event.get("team") not in (None, team.pk):
            return
        await self.access_still_held()

    async def access_still_held(self) -> bool:
        """Check the membership, the permission and the browser session that opened the
        socket again (signed out, or a new password, ends it); close the socket if gone."""
        membership = await self._current_membership()
        if (
            membership is None
            or membership.team_id != self.team.pk
            or not await self._session_still_signed_in()
        ):
            self._access_lost = True
            await self._leave_user_group()
            await self.close(code=CLOSE_NOT_A_MEMBER)
            return False
        self.membership = membership
        return True

    async def _session_still_signed_in(self) -> bool:
        if self._session_key is None:
            return True  # not opened by a browser session (a test's scope): nothing to end
        user_id = self.scope["user"].pk
        return bool(await database_sync_to_async(session_signs_in)(self._session_key, user_id))

    async def dispatch(self, message: dict[str, Any]) -> None:
        if self._access_lost and message.get("type") != "websocket.disconnect":
            return  # closed for lost access: nothing more reaches the client
        await super().dispatch(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        await self._leave_user_group()
        await super().websocket_disconnect(message)

    async def _leave_user_group(self) -> None:
        group, self._user_group = self._user_group, None
        if group is not None:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        scope = getattr(self, "_team_scope", None)
        if scope is not None:
            self._team_scope = None
            scope.__exit__(None, None, None)

    async def team_connected(self) -> None:
        """Called once the member is accepted, inside the team's scope."""

    async def team_receive_json(self, content: Any) -> None:
        """Called for each message from a (still) member."""
