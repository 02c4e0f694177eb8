"""API v1: a team's notebooks, what people do to them, and their events.

Every view resolves the team from the URL (TeamAPIView) and needs a token
with the notebooks scope. Views validate and call one service; a service's
refusal (NotebookError) becomes the API's error format with the service's
status, code and message. A notebook's live log is apps.notebooks.api.logs', its
dataset mounts apps.notebooks.api.mounts'; both build on ``NotebookAPIView``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.db.models import OuterRef, Subquery
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.response import Response

from apps.accounts.models import PersonalAccessToken
from apps.core.api.pagination import Cursor
from apps.notebooks import services
from apps.notebooks.api import serializers as s
from apps.notebooks.entitlements import idle_limit
from apps.notebooks.models import Notebook, NotebookEvent, NotebookSession
from apps.notebooks.saves import notebook_save_model, save_described
from apps.notebooks.selectors import team_notebook_settings
from apps.teams.api.base import TeamAPIView

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.request import Request

    from apps.accounts.models import User


@extend_schema(tags=["notebooks"])
class NotebookAPIView(TeamAPIView):
    """Base of the notebook API's views: the team's live notebooks, a token with the
    notebooks scope, and ``_notebook(id)`` (404 for one the team does not have)."""

    token_area = "notebooks"
    serializer_class = s.NotebookSerializer

    def get_team_queryset(self) -> QuerySet[Any]:
        return Notebook.objects.filter(deleted_at__isnull=True).select_related(
            "machine_type",
            "created_by",
        )

    @property
    def actor(self) -> User:
        """The person the request's session or token speaks for."""
        return cast("User", self.request.user)

    def _notebook(self, notebook_id: int) -> Notebook:
        notebook = self._notebooks().filter(pk=notebook_id).first()
        if notebook is None:
            raise exceptions.NotFound("No such notebook in this team.")
        return notebook

    def _notebooks(self) -> QuerySet[Notebook]:
        return NotebookAPIView.get_team_queryset(self)

    def _body(self, notebook_id: int) -> Any:
        """The notebook as it is now (services change their own copy of the row)."""
        return s.NotebookSerializer(self._notebook(notebook_id)).data


class NotebookListView(mixins.ListModelMixin, NotebookAPIView):
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
            actor=self.actor,
            **data.validated_data,
        )
        return Response(self._body(notebook.pk), status=status.HTTP_201_CREATED)


class NotebookDetailView(NotebookAPIView):
    """One notebook; change its name, machine (while stopped), idle shutdown, secrets or Git
    repository (cloned into /notebooks/<repo> on a start that does not find it); delete it
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
            actor=self.actor,
            notebook=notebook,
            name=wanted.get("name"),
            machine_type=wanted.get("machine_type"),
            idle_timeout_minutes=wanted.get("idle_timeout_minutes"),
            clear_idle_timeout="idle_timeout_minutes" in wanted
            and wanted["idle_timeout_minutes"] is None,
            secrets=wanted.get("secrets"),
            git_url=wanted.get("git_url"),
            git_ref=wanted.get("git_ref"),
            git_secret=wanted.get("git_secret"),
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
            actor=self.actor,
            notebook=notebook,
            confirmation=data.validated_data["confirmation"],
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class _NotebookActionView(NotebookAPIView):
    """A POST that calls one service on the notebook (``act``) and answers with the notebook
    as it is then: 202, the change under way, unless ``answer`` says otherwise."""

    team_permissions = {"POST": "notebooks.manage"}
    answer: int = status.HTTP_202_ACCEPTED

    def post(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        notebook = self._notebook(notebook_id)
        self.act(notebook)
        return Response(self._body(notebook.pk), status=self.answer)

    def act(self, notebook: Notebook) -> None:
        raise NotImplementedError


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
class NotebookStartView(_NotebookActionView):
    """Start it (once, however many calls): it is queued for a machine, then runs."""

    def act(self, notebook: Notebook) -> None:
        services.notebook_start(team=self.team, actor=self.actor, notebook=notebook)


@extend_schema(request=None, responses={202: s.NotebookSerializer})
class NotebookStopView(_NotebookActionView):
    """Stop it; its files are kept. Stopping a stopped notebook does nothing."""

    def act(self, notebook: Notebook) -> None:
        services.notebook_stop(team=self.team, actor=self.actor, notebook=notebook)


@extend_schema(request=None, responses={202: s.NotebookSerializer})
class NotebookRestartView(_NotebookActionView):
    """Stop it and start it again on the same storage (starts it if it was stopped)."""

    def act(self, notebook: Notebook) -> None:
        services.notebook_restart(team=self.team, actor=self.actor, notebook=notebook)


class NotebookDuplicateView(NotebookAPIView):
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
            actor=self.actor,
            notebook=notebook,
            name=data.validated_data["name"],
        )
        return Response(self._body(copy.pk), status=status.HTTP_201_CREATED)


class NotebookSaveModelView(NotebookAPIView):
    """Save a folder of the running notebook as a new model version: its host reads and
    sends the files while the notebook keeps running. Answers at once (202); the save's
    state is then on the notebook's page and the model's versions."""

    team_permissions = {"POST": "notebooks.manage"}

    @extend_schema(request=s.NotebookSaveModelSerializer, responses={202: s.NotebookSaveSerializer})
    def post(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        # It writes a model as well as reading the notebook: a token needs both areas.
        token = request.auth
        if isinstance(token, PersonalAccessToken) and not token.allows("models", write=True):
            raise exceptions.PermissionDenied("This token lacks the models:write scope.")
        notebook = self._notebook(notebook_id)
        data = s.NotebookSaveModelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ticket = notebook_save_model(
            team=self.team,
            actor=self.actor,
            notebook=notebook,
            folder=data.validated_data["folder"],
            model=data.validated_data.get("model", ""),
            model_name=data.validated_data.get("model_name", ""),
            message=data.validated_data.get("message", ""),
            parent=data.validated_data.get("parent_version"),
            format=data.validated_data["format"],
        )
        body = s.NotebookSaveSerializer(save_described(ticket)).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


@extend_schema(request=None, responses={200: s.NotebookSerializer})
class NotebookExtendView(_NotebookActionView):
    """Count now as activity: the idle shutdown countdown starts again."""

    answer = status.HTTP_200_OK

    def act(self, notebook: Notebook) -> None:
        services.notebook_extend(team=self.team, actor=self.actor, notebook=notebook)


class NotebookEventListView(mixins.ListModelMixin, NotebookAPIView):
    """The notebook's status changes and start phases, newest first."""

    team_permissions = {"GET": "notebooks.view"}
    serializer_class = s.NotebookEventSerializer  # type: ignore[assignment]
    pagination_class = Cursor

    def get_team_queryset(self) -> QuerySet[Any]:
        return NotebookEvent.objects.filter(notebook_id=self.kwargs.get("notebook_id"))

    def get(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        self._notebook(notebook_id)
        return self.list(request)
