"""API v1: a team's notebooks, what people do to them, their events and their live log.

Every view resolves the team from the URL (TeamAPIView) and needs a token
with the notebooks scope. Views validate and call one service; a service's
refusal (NotebookError) becomes the API's error format with the service's
status, code and message.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any, cast

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import OuterRef, Subquery
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, renderers, status
from rest_framework.response import Response

from apps.core.api.pagination import Cursor
from apps.core.stream import stream_after, stream_last
from apps.notebooks import services
from apps.notebooks.api import serializers as s
from apps.notebooks.entitlements import idle_limit
from apps.notebooks.models import (
    ACTIVE_STATUSES,
    Notebook,
    NotebookEvent,
    NotebookSession,
    Status,
)
from apps.notebooks.selectors import team_notebook_settings
from apps.teams.api.base import TeamAPIView

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from django.db.models import QuerySet
    from rest_framework.request import Request

    from apps.accounts.models import User

NDJSON = "application/x-ndjson"
# How often a follower looks for new messages in the stream's buffer (seconds).
FOLLOW_POLL = 0.25
# How often it checks that the reader may still read (seconds): a removed member, a lower
# role or a revoked token ends the follow within this and one poll (ARCHITECTURE decision 12).
FOLLOW_RECHECK = 0.5
_FOLLOW_PAGE = 500
_ENDED = frozenset({Status.STOPPED, Status.FAILED, Status.LOST})


def _user(request: Request) -> User:
    return cast("User", request.user)


@extend_schema(tags=["notebooks"])
class _NotebookView(TeamAPIView):
    token_area = "notebooks"
    serializer_class = s.NotebookSerializer

    def get_team_queryset(self) -> QuerySet[Any]:
        return Notebook.objects.filter(deleted_at__isnull=True).select_related(
            "machine_type",
            "created_by",
        )

    def _notebook(self, notebook_id: int) -> Notebook:
        notebook = self._notebooks().filter(pk=notebook_id).first()
        if notebook is None:
            raise exceptions.NotFound("No such notebook in this team.")
        return notebook

    def _notebooks(self) -> QuerySet[Notebook]:
        return _NotebookView.get_team_queryset(self)

    def _body(self, notebook_id: int) -> Any:
        """The notebook as it is now (services change their own copy of the row)."""
        return s.NotebookSerializer(self._notebook(notebook_id)).data


class NotebookListView(mixins.ListModelMixin, _NotebookView):
    """The team's notebooks (everyone); make one, stopped (members and up)."""

    team_permissions = {"GET": "notebooks.view", "POST": "notebooks.manage"}
    pagination_class = Cursor

    def get_team_queryset(self) -> QuerySet[Any]:
        latest = NotebookSession.objects.filter(notebook=OuterRef("pk")).order_by("-pk")
        return (
            super()
            .get_team_queryset()
            .annotate(latest_session_id=Subquery(latest.values("pk")[:1]))
        )

    def get(self, request: Request, team_slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset()) or []
        wanted = [n.latest_session_id for n in page if n.latest_session_id is not None]
        sessions = {
            session.notebook_id: session
            for session in NotebookSession.objects.select_related("host").filter(pk__in=wanted)
        }
        context = {
            **self.get_serializer_context(),
            "sessions": sessions,
            "team_idle_minutes": team_notebook_settings(self.team).idle_timeout_minutes,
            "idle_limit": idle_limit(self.team),
        }
        body = s.NotebookSerializer(page, many=True, context=context).data
        return self.get_paginated_response(body)

    @extend_schema(request=s.NotebookCreateSerializer, responses={201: s.NotebookSerializer})
    def post(self, request: Request, team_slug: str) -> Response:
        data = s.NotebookCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        notebook = services.notebook_create(
            team=self.team,
            actor=_user(request),
            **data.validated_data,
        )
        return Response(self._body(notebook.pk), status=status.HTTP_201_CREATED)


class NotebookDetailView(_NotebookView):
    """One notebook; change its name, machine (while stopped) or idle shutdown; delete it
    (with its name typed, in the body or as ?confirmation=)."""

    team_permissions = {
        "GET": "notebooks.view",
        "PATCH": "notebooks.manage",
        "DELETE": "notebooks.manage",
    }

    def get(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        return Response(self._body(notebook_id))

    @extend_schema(request=s.NotebookUpdateSerializer)
    def patch(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        notebook = self._notebook(notebook_id)
        data = s.NotebookUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wanted = data.validated_data
        services.notebook_update(
            team=self.team,
            actor=_user(request),
            notebook=notebook,
            name=wanted.get("name"),
            machine_type=wanted.get("machine_type"),
            idle_timeout_minutes=wanted.get("idle_timeout_minutes"),
            clear_idle_timeout="idle_timeout_minutes" in wanted
            and wanted["idle_timeout_minutes"] is None,
        )
        return Response(self._body(notebook.pk))

    @extend_schema(
        request=s.NotebookDeleteSerializer,
        parameters=[
            OpenApiParameter(
                "confirmation",
                str,
                required=False,
                description="The notebook's name, when it is not in the body.",
            ),
        ],
        responses={204: None},
    )
    def delete(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        notebook = self._notebook(notebook_id)
        given: Any = request.data
        if isinstance(given, dict) and "confirmation" not in given:
            given = {**given, **request.query_params.dict()}
        data = s.NotebookDeleteSerializer(data=given)
        data.is_valid(raise_exception=True)
        services.notebook_delete(
            team=self.team,
            actor=_user(request),
            notebook=notebook,
            confirmation=data.validated_data["confirmation"],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class NotebookStartView(_NotebookView):
    """Start it (once, however many calls): it is queued for a machine, then runs."""

    team_permissions = {"POST": "notebooks.manage"}

    @extend_schema(
        request=None,
        responses={
            202: s.NotebookSerializer,
            402: OpenApiResponse(
                description=(
                    "The team's plan or spend cap refuses: error.code is plan_machine_type, "
                    "plan_concurrency or spend_cap, and error.upgrade_url is where to upgrade "
                    "(docs/billing.md)."
                ),
            ),
        },
    )
    def post(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        notebook = self._notebook(notebook_id)
        services.notebook_start(team=self.team, actor=_user(request), notebook=notebook)
        return Response(self._body(notebook.pk), status=status.HTTP_202_ACCEPTED)


class NotebookStopView(_NotebookView):
    """Stop it; its files are kept. Stopping a stopped notebook does nothing."""

    team_permissions = {"POST": "notebooks.manage"}

    @extend_schema(request=None, responses={202: s.NotebookSerializer})
    def post(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        notebook = self._notebook(notebook_id)
        services.notebook_stop(team=self.team, actor=_user(request), notebook=notebook)
        return Response(self._body(notebook.pk), status=status.HTTP_202_ACCEPTED)


class NotebookRestartView(_NotebookView):
    """Stop it and start it again on the same storage (starts it if it was stopped)."""

    team_permissions = {"POST": "notebooks.manage"}

    @extend_schema(request=None, responses={202: s.NotebookSerializer})
    def post(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        notebook = self._notebook(notebook_id)
        services.notebook_restart(team=self.team, actor=_user(request), notebook=notebook)
        return Response(self._body(notebook.pk), status=status.HTTP_202_ACCEPTED)


class NotebookDuplicateView(_NotebookView):
    """A new stopped notebook with the same template, machine and idle policy, and a copy of
    its files."""

    team_permissions = {"POST": "notebooks.manage"}

    @extend_schema(request=s.NotebookDuplicateSerializer, responses={201: s.NotebookSerializer})
    def post(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        notebook = self._notebook(notebook_id)
        data = s.NotebookDuplicateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        copy = services.notebook_duplicate(
            team=self.team,
            actor=_user(request),
            notebook=notebook,
            name=data.validated_data["name"],
        )
        return Response(self._body(copy.pk), status=status.HTTP_201_CREATED)


class NotebookExtendView(_NotebookView):
    """Count now as activity: the idle shutdown countdown starts again."""

    team_permissions = {"POST": "notebooks.manage"}

    @extend_schema(request=None, responses={200: s.NotebookSerializer})
    def post(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        notebook = self._notebook(notebook_id)
        services.notebook_extend(team=self.team, actor=_user(request), notebook=notebook)
        return Response(self._body(notebook.pk))


class NotebookEventListView(mixins.ListModelMixin, _NotebookView):
    """The notebook's status changes and start phases, newest first."""

    team_permissions = {"GET": "notebooks.view"}
    serializer_class = s.NotebookEventSerializer  # type: ignore[assignment]
    pagination_class = Cursor

    def get_team_queryset(self) -> QuerySet[Any]:
        return NotebookEvent.objects.filter(notebook_id=self.kwargs.get("notebook_id"))

    def get(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        self._notebook(notebook_id)
        return self.list(request)


class _NDJSONRenderer(renderers.JSONRenderer):
    """Lets clients ask for NDJSON; errors then come as one JSON line."""

    media_type = NDJSON
    format = "ndjson"

    def render(self, data: Any, *args: Any, **kwargs: Any) -> bytes:
        return super().render(data, *args, **kwargs) + b"\n"


class NotebookLogsView(_NotebookView):
    """The notebook's live stream (its log lines and status changes), from its buffer.

    ``?after=<seq>`` returns only newer messages; ``?follow=1`` keeps the response
    open and sends each new message as one line of NDJSON until the notebook
    stops, ``?timeout`` seconds pass, or the reader loses access (removed from the
    team, a role without ``notebooks.view``, the token revoked or expired, the
    browser session signed out or the password changed).
    """

    team_permissions = {"GET": "notebooks.view"}
    renderer_classes = [renderers.JSONRenderer, _NDJSONRenderer]

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
        if wanted["follow"]:
            return self._follow(request, notebook, wanted["after"], wanted["timeout"])
        messages = stream_after(notebook.stream, wanted["after"], wanted["limit"])
        # Read after the messages, so "last" is never behind them.
        return Response({"last": stream_last(notebook.stream), "messages": messages})

    def _follow(
        self,
        request: Request,
        notebook: Notebook,
        after: int,
        seconds: int,
    ) -> StreamingHttpResponse:
        follower = Follower(
            notebook.stream,
            after=after,
            seconds=seconds,
            stopped=notebook.status not in ACTIVE_STATUSES
            and notebook.desired_state == Notebook.Desired.STOPPED,
            allowed=self.access_check(),
        )
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
    it asks ``allowed()`` (a database read) and ends, sending nothing more, when not.

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

    def step(self) -> list[bytes]:
        """Read the buffer once: the lines to send now (``done`` says when to stop)."""
        rows = stream_after(self.stream, self.last, _FOLLOW_PAGE)
        lines = []
        for row in rows:
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
            if self._check_due() and not self.allowed():
                return
            lines = self.step()
            yield from lines
            if not lines and not self.done:
                time.sleep(FOLLOW_POLL)

    async def aiter(self) -> AsyncIterator[bytes]:
        # The buffer is Redis or memory, never the database: any thread may read it.
        step = sync_to_async(self.step, thread_sensitive=False)
        # The check reads the database: on the request's own thread, whose connection
        # Django closes when the response ends.
        allowed = sync_to_async(self.allowed)
        while not self.done:
            if self._check_due() and not await allowed():
                return
            lines = await step()
            for line in lines:
                yield line
            if not lines and not self.done:
                await asyncio.sleep(FOLLOW_POLL)
