"""Base class for websocket consumers that belong to a team (/ws/teams/<team_slug>/...).

Like the page and API base classes: the team comes from the URL, through the
connecting user's membership; a visitor or an outsider is refused at the
handshake (the client sees the connection rejected, learning nothing about
the team); a member whose role lacks ``permission`` is refused too. The
consumer then runs in the team's scope, so database calls made through
``database_sync_to_async`` are scoped (asgiref carries the context over).
Subclasses implement ``team_connected`` and ``team_receive_json``; they may
not override ``connect`` or ``receive_json``. Each message from the client
re-checks membership, so a removed member's messages are refused at once.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.core.tenancy import Sealed, team_scope
from apps.teams.permissions import role_allows
from apps.teams.selectors import membership_in

# Close codes in the 4000 range are the application's own (RFC 6455).
CLOSE_NOT_A_MEMBER = 4404


class TeamConsumer(Sealed, AsyncJsonWebsocketConsumer):
    permission = "team.view"
    team: Any
    membership: Any

    _SEALED = ("connect", "receive", "receive_json", "websocket_connect", "websocket_receive")
    _SEALED_HINT = "Implement team_connected and team_receive_json instead."

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
        membership = await self._current_membership()
        if membership is None:
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
        membership = await self._current_membership()
        if membership is None or membership.team_id != self.team.pk:
            await self.close(code=CLOSE_NOT_A_MEMBER)
            return
        self.membership = membership
        await self.team_receive_json(content)

    async def disconnect(self, code: int) -> None:
        scope = getattr(self, "_team_scope", None)
        if scope is not None:
            self._team_scope = None
            scope.__exit__(None, None, None)

    async def team_connected(self) -> None:
        """Called once the member is accepted, inside the team's scope."""

    async def team_receive_json(self, content: Any) -> None:
        """Called for each message from a (still) member."""
