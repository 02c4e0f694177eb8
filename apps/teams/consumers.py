"""The team base class for websocket consumers (/ws/teams/<team_slug>/...).

Like the page and API base classes (apps.teams.scope, apps.teams.api.base): the
team comes from the URL, through the connecting user's membership; a visitor or an
outsider is refused at the handshake (the client sees the connection rejected,
learning nothing about the team); a member whose role lacks ``permission`` is
refused too. The consumer then runs in the team's scope, so database calls made
through ``database_sync_to_async`` are scoped (asgiref carries the context over).
Subclasses implement ``team_connected`` and ``team_receive_json``; they may
not override ``connect``, ``receive``, ``receive_json``, ``decode_json``,
``access_changed``, ``access_still_held``, ``dispatch``, ``websocket_disconnect`` or
``__call__`` (which releases what the consumer holds however it ends: ``disconnect``
runs then too, so it must be safe to run twice). A client message that is not JSON (or
a binary one) is ignored.

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
import contextlib
import contextvars
import json
import weakref
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import InMemoryChannelLayer

from apps.core.fanout import Viewer, hub
from apps.core.revocation import user_group
from apps.core.sessions import session_signs_in, sessions_signing_in
from apps.core.stream import register_server_loop, stream_after_text, stream_resume
from apps.core.tenancy import Sealed, team_scope
from apps.teams.permissions import role_allows
from apps.teams.selectors import membership_in, roles_of

# Close codes in the 4000 range are the application's own (RFC 6455).
CLOSE_NOT_A_MEMBER = 4404
# Stream viewers' memberships are asked again this often (seconds; one query per process
# for all of them: _Watch), in case the access signal was lost (a channel layer may drop
# messages).
_RECHECK_EVERY = 30.0
_BACKLOG_PAGE = 500
# The largest message number a client may name (a backlog request): JSON's exact integers.
_MAX_SEQ = 2**53
# What decode_json returns for a client message that is not JSON (ignored).
_UNDECODABLE = object()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"not JSON: {name}")


def _bounded_seq(value: Any) -> int | None:
    """A message number a client sent: an int (or its decimal text) within 0.._MAX_SEQ;
    None for anything else (a float, a bool, Infinity, a huge or negative number)."""
    if isinstance(value, str) and value.isdigit() and len(value) <= len(str(_MAX_SEQ)):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= _MAX_SEQ else None


class TeamConsumer(Sealed, AsyncJsonWebsocketConsumer):
    permission = "team.view"
    team: Any
    membership: Any

    _SEALED = (
        "__call__",
        "connect",
        "receive",
        "decode_json",
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

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # Channels runs ``disconnect`` only on a clean websocket.disconnect: a consumer that
        # ends otherwise (an exception, its task cancelled) must still release what it holds
        # (a stream viewer's hub registration, the membership watch, the user group).
        try:
            await super().__call__(scope, receive, send)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._release())

    async def _release(self) -> None:
        """What ``disconnect`` releases; runs again (harmlessly) when the consumer ends."""
        with contextlib.suppress(Exception):
            await self._leave_user_group()
        await self.disconnect(1011)

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any
    ) -> None:
        # Binary frames and text that is not JSON are ignored (a client must not be able to
        # crash the consumer with one).
        if not text_data:
            return
        content = await self.decode_json(text_data)
        if content is not _UNDECODABLE:
            await self.receive_json(content, **kwargs)

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return json.loads(text_data, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return _UNDECODABLE

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


class _Watch:
    """The membership of every stream viewer of one web process (one event loop), asked
    again every ``_RECHECK_EVERY`` seconds in one batch for all of them (the roles in one
    query, the browser sessions that opened the sockets in one more, and their users), in
    case an access signal was lost (a channel layer may drop messages). A viewer whose
    membership, permission or session no longer shows gets TeamConsumer's full check,
    which closes it."""

    def __init__(self) -> None:
        self.consumers: set[TeamStreamConsumer] = set()
        self.task: asyncio.Task[None] | None = None
        self.sweeps = 0

    def add(self, consumer: TeamStreamConsumer) -> None:
        self.consumers.add(consumer)
        if self.task is None or self.task.done():
            # A fresh context: not the team scope of the consumer that happens to start it.
            self.task = asyncio.get_running_loop().create_task(
                self._run(), context=contextvars.Context()
            )

    def discard(self, consumer: TeamStreamConsumer) -> None:
        self.consumers.discard(consumer)
        if not self.consumers and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        while self.consumers:
            await asyncio.sleep(_RECHECK_EVERY)
            await self.sweep()

    async def sweep(self) -> None:
        consumers = [c for c in self.consumers if not c._access_lost]
        if not consumers:
            return
        self.sweeps += 1
        pairs = {(c.scope["user"].pk, c.team.pk) for c in consumers}
        sessions = {(c._session_key, c.scope["user"].pk) for c in consumers if c._session_key}
        roles, signed_in = await database_sync_to_async(_memberships_and_sessions)(pairs, sessions)
        for consumer in consumers:
            role = roles.get((consumer.scope["user"].pk, consumer.team.pk))
            if (
                role is None
                or not role_allows(role, consumer.permission)
                or (consumer._session_key is not None and consumer._session_key not in signed_in)
            ):
                await consumer.access_still_held()


def _memberships_and_sessions(
    pairs: set[tuple[int, int]], sessions: set[tuple[str, int]]
) -> tuple[dict[tuple[int, int], str], set[str]]:
    """The sweep's reads, on one thread: the roles of the (user, team) pairs and which of
    the (session key, user) pairs still sign their user in, each in one batch."""
    return roles_of(pairs), sessions_signing_in(sessions)


_watches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watch] = weakref.WeakKeyDictionary()


def stream_watch() -> _Watch:
    """This event loop's membership watch over its stream viewers."""
    loop = asyncio.get_running_loop()
    watch = _watches.get(loop)
    if watch is None:
        watch = _watches[loop] = _Watch()
    return watch


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
    unnumbered and never replayed.

    Live messages come through this process's fan-out hub (apps.core.fanout), not the
    consumer's own channel: at most one websocket message per viewer per 50 ms, a JSON
    array of messages when more than one is due; a viewer that does not keep up is sent
    ``{"type": "skipped", "from": a, "to": b}`` and then the newest messages. The client
    may ask ``{"type": "backlog", "from": a, "to": b}``: it gets
    ``{"type": "backlog", "from": a, "to": b, "messages": [...]}`` (at most
    ``_BACKLOG_PAGE`` of them, from ``a`` on; ask again after the last for more), with
    ``"gap": {"from": a, "to": c}`` when the buffer no longer holds the first ones
    (``from``/``to``: integers up to 2**53; anything else is ignored). A viewer connected
    while the stream starts over is sent ``{"type": "restarted", "epoch": E}`` and then
    the new numbers. The membership and the browser session are asked again every
    ``_RECHECK_EVERY`` seconds for all of the process's viewers at once (``_Watch``),
    besides TeamConsumer's signal.

    Subclasses name the URL's id (``object_kwarg``) and implement ``stream_snapshot``
    (runs in a thread, in the team's scope); ``after_hello`` may send more before the
    backlog (an unnumbered snapshot).
    """

    object_kwarg = ""
    viewer: Viewer | None = None

    def stream_snapshot(self, object_id: int) -> tuple[str, dict[str, Any]] | None:
        """The object's stream name and its status now; None when the team has no such one."""
        raise NotImplementedError

    async def after_hello(self) -> None:
        """Called after the hello, before the backlog."""

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def team_connected(self) -> None:
        object_id = int(self.scope["url_route"]["kwargs"][self.object_kwarg])
        self.object_id = object_id
        snapshot = await database_sync_to_async(self.stream_snapshot)(object_id)
        if snapshot is None:
            await self.close(code=CLOSE_NOT_A_MEMBER)
            return
        self.stream, status = snapshot
        # Subscribe first, read the backlog second: a message published in between
        # arrives both ways and is dropped the second time by its number.
        self.viewer = Viewer(self.stream, self._send_text, allowed=lambda: not self._access_lost)
        await hub().register(self.viewer)
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
        if self._access_lost or self.viewer is None:
            return
        self.viewer.last = self.last
        self.viewer.start()
        stream_watch().add(self)

    async def _catch_up(self, upto: int | None = None) -> None:
        """Send buffered messages after ``self.last`` (up to ``upto``); say so if some are gone."""
        while upto is None or self.last < upto:
            rows = await sync_to_async(stream_after_text, thread_sensitive=False)(
                self.stream,
                self.last,
                _BACKLOG_PAGE,
            )
            if not rows:
                return
            if rows[0][0] > self.last + 1 and self.last:
                await self.send_json({"type": "gap", "from": self.last + 1, "to": rows[0][0] - 1})
            for seq, text in rows:
                if upto is not None and seq > upto:
                    return
                await self.send(text_data=text)
                self.last = seq
            if len(rows) < _BACKLOG_PAGE:
                return

    async def _backlog(self, content: dict[str, Any]) -> None:
        asked_first = _bounded_seq(content.get("from", 1))
        if asked_first is None:
            return
        first = max(1, asked_first)
        last = _bounded_seq(content.get("to", first))
        if last is None or last < first:
            return
        rows = await sync_to_async(stream_after_text, thread_sensitive=False)(
            self.stream, first - 1, min(last - first + 1, _BACKLOG_PAGE)
        )
        texts = [text for seq, text in rows if seq <= last]
        reply = f'{{"type":"backlog","from":{first},"to":{last},"messages":[{",".join(texts)}]'
        available = rows[0][0] if rows else None
        if available is None or available > first:
            gap_to = last if available is None else min(last, available - 1)
            reply += f',"gap":{{"from":{first},"to":{gap_to}}}'
        await self.send(text_data=reply + "}")

    async def team_receive_json(self, content: Any) -> None:
        # "ping" keeps proxies from closing an idle socket; "backlog" asks for skipped ones.
        if not isinstance(content, dict):
            return
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        elif content.get("type") == "backlog" and self.viewer is not None:
            await self._backlog(content)

    async def disconnect(self, code: int) -> None:
        viewer, self.viewer = self.viewer, None
        if viewer is not None:
            stream_watch().discard(self)
            await hub().unregister(viewer)
        await super().disconnect(code)
