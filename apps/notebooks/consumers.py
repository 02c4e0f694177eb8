"""Live status and logs of one notebook: ``/ws/teams/<slug>/notebooks/<id>/?after=<seq>``.

On connect a member gets ``{"type": "hello", "status": {...}, "last": N,
"epoch": E}``, then every buffered message numbered after ``after`` (all of the
backlog without it), then live messages. Each message carries ``seq``; a
client that reconnects with the last ``seq`` it saw misses nothing and sees
nothing twice (see apps.core.stream). If the backlog no longer holds what it
missed, it gets ``{"type": "gap", "from": a, "to": b}`` first. A client
resumes with the hello's epoch too (``&epoch=E``): if E is not the buffer's
epoch (the stream started over: its buffer was lost in a restart), or, without
it, if ``after`` is beyond the stream's last number, the hello says
``"restarted": true`` and the whole backlog follows. Outsiders and visitors are
refused at the handshake. A member removed from the team, or lowered to a role
without ``notebooks.view``, is cut off at once: the teams app signals the
change and TeamConsumer closes the socket (ARCHITECTURE decision 12). The
membership is also checked again every ``_RECHECK_EVERY`` seconds of traffic,
in case that signal was lost (a channel layer may drop messages).
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from apps.core.stream import group_name, stream_after, stream_resume
from apps.notebooks.lifecycle import status_message
from apps.notebooks.models import Notebook
from apps.notebooks.selectors import open_session
from apps.teams.consumers import CLOSE_NOT_A_MEMBER, TeamConsumer

_RECHECK_EVERY = 30.0
_BACKLOG_PAGE = 500


class NotebookStreamConsumer(TeamConsumer):
    permission = "notebooks.view"

    async def team_connected(self) -> None:
        notebook_id = self.scope["url_route"]["kwargs"]["notebook_id"]
        snapshot = await database_sync_to_async(self._snapshot)(notebook_id)
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
        await self._catch_up(latest)

    def _snapshot(self, notebook_id: int) -> tuple[str, dict[str, Any]] | None:
        notebook = Notebook.objects.filter(pk=notebook_id, deleted_at__isnull=True).first()
        if notebook is None:
            return None
        return notebook.stream, status_message(notebook, open_session(notebook))

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

    async def stream_message(self, event: dict[str, Any]) -> None:
        if time.monotonic() - self.checked_at > _RECHECK_EVERY:
            self.checked_at = time.monotonic()
            if not await self.access_still_held():
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

    async def team_receive_json(self, content: Any) -> None:
        # Nothing to say to the server; "ping" keeps proxies from closing an idle socket.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group is not None:
            await self.channel_layer.group_discard(group, self.channel_name)
        await super().disconnect(code)
