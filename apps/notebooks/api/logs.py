"""API v1: a notebook's live stream (its log lines and status changes), from its buffer,
as one page of JSON or followed as NDJSON while the reader may read it. ``stream_page``,
``follow_response``, ``Follower`` and ``NDJSONRenderer`` serve other streams' logs routes
the same way (a job run's, apps.jobs.api.views)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import renderers
from rest_framework.response import Response

from apps.core.db import release_connections
from apps.core.stream import Resume, stream_after, stream_last, stream_resume
from apps.notebooks.api import serializers as s
from apps.notebooks.api.views import NotebookAPIView
from apps.notebooks.models import ACTIVE_STATUSES, Notebook, Status

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from rest_framework.request import Request

NDJSON = "application/x-ndjson"
# How often a follower looks for new messages in the stream's buffer (seconds).
FOLLOW_POLL = 0.25
# How often it checks that the reader may still read (seconds): a removed member, a lower
# role or a revoked token ends the follow within this and one poll (ARCHITECTURE decision 12).
FOLLOW_RECHECK = 0.5
_FOLLOW_PAGE = 500
_ENDED = frozenset({Status.STOPPED, Status.FAILED, Status.LOST})


class NDJSONRenderer(renderers.JSONRenderer):
    """Lets clients ask for NDJSON; errors then come as one JSON line."""

    media_type = NDJSON
    format = "ndjson"

    def render(self, data: Any, *args: Any, **kwargs: Any) -> bytes:
        return super().render(data, *args, **kwargs) + b"\n"


class NotebookLogsView(NotebookAPIView):
    """The notebook's live stream (its log lines and status changes), from its buffer.

    ``?after=<seq>`` returns only newer messages; with ``&epoch=<epoch>`` (the one the page
    that gave that seq said), a stream that started over since (its buffer was lost in a
    restart: another epoch) returns all it holds and says ``"restarted": true``.
    ``?follow=1`` keeps the response open and sends each new message as one line of
    NDJSON until the notebook stops, ``?timeout`` seconds pass, or the reader loses
    access (removed from the team, a role without ``notebooks.view``, the token
    revoked or expired, the browser session signed out or the password changed).
    """

    team_permissions = {"GET": "notebooks.view"}
    renderer_classes = [renderers.JSONRenderer, NDJSONRenderer]

    @extend_schema(
        parameters=[s.LogsQuerySerializer],
        responses={
            (200, "application/json"): s.LogsSerializer,
            (200, NDJSON): OpenApiResponse(
                OpenApiTypes.STR,
                description="With follow=1: one message (JSON, with its seq) per line.",
            ),
        },
    )
    def get(self, request: Request, team_slug: str, notebook_id: int) -> Any:
        notebook = self._notebook(notebook_id)
        query = s.LogsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        wanted = query.validated_data
        resume = stream_resume(notebook.stream, wanted["after"], wanted["epoch"])
        if wanted["follow"]:
            follower = Follower(
                notebook.stream,
                after=resume.after,
                seconds=wanted["timeout"],
                stopped=notebook.status not in ACTIVE_STATUSES
                and notebook.desired_state == Notebook.Desired.STOPPED,
                allowed=self.access_check(),
            )
            return follow_response(request, follower)
        return Response(stream_page(notebook.stream, resume, wanted["limit"]))


def stream_page(stream: str, resume: Resume, limit: int) -> dict[str, Any]:
    """One page of a stream's buffer after ``resume`` (stream_resume's answer to the
    reader's ``after`` and ``epoch``): the LogsSerializer shape."""
    messages = stream_after(stream, resume.after, limit)
    # Read after the messages, so "last" is never behind them.
    page: dict[str, Any] = {
        "last": stream_last(stream),
        "epoch": resume.epoch,
        "messages": messages,
    }
    if resume.restarted:
        page["restarted"] = True
    return page


def follow_response(request: Request, follower: Follower) -> StreamingHttpResponse:
    """``follower``'s lines as a streamed NDJSON response, the kind each server streams."""
    # Under ASGI a synchronous iterator would be read to its end before
    # anything is sent; give each server the kind it streams.
    content: Iterator[bytes] | AsyncIterator[bytes] = (
        follower.aiter() if isinstance(request._request, ASGIRequest) else iter(follower)
    )
    response = StreamingHttpResponse(content, content_type=NDJSON)
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # nginx: pass lines on as they come
    return response


class Follower:
    """A stream's messages after ``after``, as NDJSON lines, until the notebook stops
    (a status message saying so, newer than the start) or ``seconds`` pass. If it was
    already stopped, it ends once the backlog is sent. Every ``FOLLOW_RECHECK`` seconds
    it asks ``allowed()`` (a database read, its connection given back after) and ends,
    sending nothing more, when not.

    A poll, not a channel-layer subscription: one indexed read (about a millisecond)
    twice a second per follow, the same under WSGI and ASGI, and it sees what no
    signal announces (a token reaching its expiry)."""

    def __init__(
        self,
        stream: str,
        *,
        after: int,
        seconds: float,
        stopped: bool,
        allowed: Callable[[], bool],
    ) -> None:
        self.stream = stream
        self.last = after
        self.until = time.monotonic() + seconds
        self.started_at_seq = stream_last(stream)
        self.stopped = stopped
        self.allowed = allowed
        self.check_at = time.monotonic() + FOLLOW_RECHECK
        self.done = False

    def _still_allowed(self) -> bool:
        """``allowed()``, then its database connection given back: a follow holds none
        between its checks (the pool is the whole process's; its response started with
        none, apps.core.middleware.StreamingReleasesConnectionMiddleware)."""
        try:
            return self.allowed()
        finally:
            release_connections()

    def _check_due(self) -> bool:
        now = time.monotonic()
        if now < self.check_at:
            return False
        self.check_at = now + FOLLOW_RECHECK
        return True

    def _ends(self, row: dict[str, Any]) -> bool:
        return (
            row["seq"] > self.started_at_seq
            and row.get("type") == "status"
            and row.get("status") in _ENDED
            and row.get("desired") != Notebook.Desired.RUNNING
        )

    def _sends(self, row: dict[str, Any]) -> bool:
        """Whether ``row`` goes to the reader (a subclass may follow one kind only)."""
        return True

    def step(self) -> list[bytes]:
        """Read the buffer once: the lines to send now (``done`` says when to stop)."""
        rows = stream_after(self.stream, self.last, _FOLLOW_PAGE)
        lines = []
        for row in rows:
            if self._sends(row):
                lines.append(json.dumps(row, separators=(",", ":")).encode() + b"\n")
            self.last = row["seq"]
            if self._ends(row):
                self.done = True
                return lines
        caught_up = len(rows) < _FOLLOW_PAGE
        if (self.stopped and caught_up) or time.monotonic() >= self.until:
            self.done = True
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while not self.done:
            if self._check_due() and not self._still_allowed():
                return
            lines = self.step()
            yield from lines
            if not lines and not self.done:
                time.sleep(FOLLOW_POLL)

    async def aiter(self) -> AsyncIterator[bytes]:
        # The buffer is Redis or memory, never the database: any thread may read it.
        step = sync_to_async(self.step, thread_sensitive=False)
        # The check reads the database: on the request's own thread, which gives the
        # connection back after each check.
        allowed = sync_to_async(self._still_allowed)
        while not self.done:
            if self._check_due() and not await allowed():
                return
            lines = await step()
            for line in lines:
                yield line
            if not lines and not self.done:
                await asyncio.sleep(FOLLOW_POLL)
