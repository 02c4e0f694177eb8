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
import json
import time
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer

from apps.core.revocation import user_group
from apps.core.sessions import session_signs_in
from apps.core.stream import group_name, register_server_loop, stream_after, stream_resume
from apps.core.tenancy import Sealed, team_scope
from apps.teams.permissions import role_allows
from apps.teams.selectors import membership_in

# Close codes in the 4000 range are the application's own (RFC 6455).
CLOSE_NOT_A_MEMBER = 4404
# A stream consumer checks the membership again this often (seconds of traffic), in case
# the access signal was lost (a channel layer may drop messages).
_RECHECK_EVERY = 30.0
_BACKLOG_PAGE = 500


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


class TeamStreamConsumer(TeamConsumer):
    """Live status and messages of one object's stream (apps.core.stream):
    ``/ws/teams/<slug>/<things>/<id>/?after=<seq>&epoch=<E>``.

    On connect a member gets ``{"type": "hello", "status": {...}, "last": N, "epoch": E}``,
    then every buffered message numbered after ``after`` (all of the backlog without it),
    then live messages. Each message carries ``seq``; a client that reconnects with the
    last ``seq`` it saw misses nothing and sees nothing twice. If the backlog no longer
    holds what it missed, it gets ``{"type": "gap", "from": a, "to": b}`` first. If the
    client's epoch is not the buffer's (the stream started over: its buffer was lost in a
    restart), or, without one, if ``after`` is beyond the stream's last number, the hello
    says ``"restarted": true`` and the whole backlog follows. Messages sent with
    ``stream_broadcast`` (a snapshot the next one replaces) reach the viewers as they are,
    unnumbered and never replayed. The membership is checked again every
    ``_RECHECK_EVERY`` seconds of traffic, besides TeamConsumer's signal.

    Subclasses name the URL's id (``object_kwarg``) and implement ``stream_snapshot``
    (runs in a thread, in the team's scope); ``after_hello`` may send more before the
    backlog (an unnumbered snapshot).
    """

    object_kwarg = ""

    def stream_snapshot(self, object_id: int) -> tuple[str, dict[str, Any]] | None:
        """The object's stream name and its status now; None when the team has no such one."""
        raise NotImplementedError

    async def after_hello(self) -> None:
        """Called after the hello, before the backlog."""

    async def team_connected(self) -> None:
        object_id = int(self.scope["url_route"]["kwargs"][self.object_kwarg])
        self.object_id = object_id
        snapshot = await database_sync_to_async(self.stream_snapshot)(object_id)
        if snapshot is None:
            await self.close(code=CLOSE_NOT_A_MEMBER)
            return
        self.stream, status = snapshot
        # Join first, read the backlog second: a message published in between
        # arrives both ways and is dropped the second time by its number.
        self.group = group_name(self.stream)
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.checked_at = time.monotonic()
        query = parse_qs(self.scope.get("query_string", b"").decode())
        try:
            after = max(0, int(query.get("after", ["0"])[0]))
        except ValueError:
            after = 0
        epoch = query.get("epoch", [""])[0]
        resume = await sync_to_async(stream_resume, thread_sensitive=False)(
            self.stream, after, epoch
        )
        latest = resume.last
        self.last = resume.after
        hello = {"type": "hello", "status": status, "last": latest, "epoch": resume.epoch}
        if resume.restarted:
            # Numbers from a buffer lost in a restart (another epoch): the stream started
            # over, and the client must forget its numbers too.
            hello["restarted"] = True
        await self.send_json(hello)
        await self.after_hello()
        await self._catch_up(latest)

    async def _catch_up(self, upto: int | None = None) -> None:
        """Send buffered messages after ``self.last`` (up to ``upto``); say so if some are gone."""
        while upto is None or self.last < upto:
            rows = await sync_to_async(stream_after, thread_sensitive=False)(
                self.stream,
                self.last,
                _BACKLOG_PAGE,
            )
            if not rows:
                return
            if rows[0]["seq"] > self.last + 1 and self.last:
                await self.send_json(
                    {"type": "gap", "from": self.last + 1, "to": rows[0]["seq"] - 1}
                )
            for row in rows:
                if upto is not None and row["seq"] > upto:
                    return
                await self.send(text_data=json.dumps(row, separators=(",", ":")))
                self.last = row["seq"]
            if len(rows) < _BACKLOG_PAGE:
                return

    async def _still_held(self) -> bool:
        if time.monotonic() - self.checked_at > _RECHECK_EVERY:
            self.checked_at = time.monotonic()
            return await self.access_still_held()
        return True

    async def stream_message(self, event: dict[str, Any]) -> None:
        if not await self._still_held():
            return
        seq = event["seq"]
        if seq <= self.last:
            return  # already sent from the backlog
        if seq > self.last + 1:
            await self._catch_up(seq)  # a hole: fill it from the buffer, in order
            if seq <= self.last:
                return
        body = event["body"]
        await self.send(
            text_data=f'{{"seq":{seq},{body[1:]}' if body != "{}" else f'{{"seq":{seq}}}'
        )
        self.last = seq

    async def stream_broadcast(self, event: dict[str, Any]) -> None:
        if await self._still_held():
            await self.send(text_data=event["body"])

    async def team_receive_json(self, content: Any) -> None:
        # Nothing to say to the server; "ping" keeps proxies from closing an idle socket.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group is not None:
            await self.channel_layer.group_discard(group, self.channel_name)
        await super().disconnect(code)
