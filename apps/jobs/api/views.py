"""API v1: a team's jobs, their runs, and what people do to them.

Every view resolves the team from the URL (TeamAPIView) and needs a token with the jobs
scope; reading needs ``notebooks.view``, changing or running ``notebooks.manage`` (jobs run
the same code on the same machines as notebooks). Views validate and call one service; a
service's refusal (JobError) becomes the API's error format. A run's log is its live
stream's buffer, read like a notebook's (apps.notebooks.api.logs).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.response import Response

from apps.accounts.models import PersonalAccessToken
from apps.core.api.pagination import Cursor
from apps.core.stream import stream_resume
from apps.jobs import selectors, services
from apps.jobs.api import serializers as s
from apps.jobs.errors import JobError
from apps.jobs.models import OPEN_RUN_STATUSES, Job, Run
from apps.jobs.outputs import outputs_described
from apps.notebooks.api import serializers as logs_s
from apps.notebooks.api.logs import (
    NDJSON,
    Follower,
    NDJSONRenderer,
    follow_response,
    stream_page,
)
from apps.teams.api.base import TeamAPIView

if TYPE_CHECKING:
    from collections.abc import Iterator

    from django.db.models import QuerySet
    from rest_framework.request import Request
    from rest_framework.serializers import BaseSerializer

    from apps.accounts.models import User

VIEW = services.VIEW
MANAGE = services.MANAGE
# A workload token (a notebook's or a job's own) reads jobs and starts runs of them, and
# nothing more: making, changing or deleting a job, or a run's ``changes`` beyond these,
# would let a token read off an untrusted host leave behind code that runs as its person
# (a schedule), or hand the team's secrets to a command of its choosing.
WORKLOAD_REFUSAL = (
    "A notebook's or job's own token cannot create or change jobs; use a personal token."
)
WORKLOAD_RUN_CHANGES = frozenset({"parameters", "machine_type"})
_RUN_ENDED = {str(status) for status in Run.Status} - {str(s) for s in OPEN_RUN_STATUSES}


@contextmanager
def _api_names() -> Iterator[None]:
    """A refusal names the field as the API does (secrets are ``secret_names`` here)."""
    try:
        yield
    except JobError as refusal:
        if refusal.field == "secrets":
            refusal.field = "secret_names"
        raise


@extend_schema(tags=["jobs"])
class JobAPIView(TeamAPIView):
    """Base of the jobs API's views: the team's live jobs, a token with the jobs scope,
    ``_job(id)`` and ``_run(job, number)`` (404 for what the team does not have)."""

    token_area = "jobs"
    serializer_class: type[BaseSerializer[Any]] = s.JobSerializer

    def get_team_queryset(self) -> QuerySet[Any]:
        return selectors.live_jobs(self.team)

    @property
    def actor(self) -> User:
        return cast("User", self.request.user)

    def _job(self, job_id: int) -> Job:
        job = selectors.job_of(self.team, job_id)
        if job is None:
            raise exceptions.NotFound("No such job in this team.")
        return job

    def _run(self, job: Job, number: int) -> Run:
        run = selectors.run_of(self.team, job, number)
        if run is None:
            raise exceptions.NotFound(f"{job.name} has no run {number}.")
        return run

    def _workload_token(self) -> PersonalAccessToken | None:
        """The request's token when it is a workload token (apps.accounts.workload)."""
        auth = self.request.auth
        return auth if isinstance(auth, PersonalAccessToken) and auth.is_workload else None

    def _refuse_workload(self) -> None:
        if self._workload_token() is not None:
            raise exceptions.PermissionDenied(WORKLOAD_REFUSAL)

    def _run_limits(self, changes: dict[str, Any] | None) -> dict[str, Any]:
        """For a run started with a workload token: refuse ``changes`` to anything but
        WORKLOAD_RUN_CHANGES, and cap the run's own token at the starting token's expiry."""
        token = self._workload_token()
        if token is None:
            return {}
        refused = sorted(set(changes or {}) - WORKLOAD_RUN_CHANGES)
        if refused:
            names = ", ".join("secret_names" if name == "secrets" else name for name in refused)
            raise exceptions.PermissionDenied(
                f"{WORKLOAD_REFUSAL} (A run it starts may change only "
                f"{' and '.join(sorted(WORKLOAD_RUN_CHANGES))}, not {names}.)"
            )
        return {"token_not_after": token.expires_at}

    def _job_body(self, job_id: int) -> Any:
        return s.JobSerializer(self._job(job_id)).data

    def _run_body(self, run: Run) -> Any:
        run = selectors.run_of(self.team, run.job, run.number) or run
        context = {
            "costs": selectors.costs_of([run]),
            "attempts": selectors.run_attempts(self.team, run),
            "outputs": outputs_described(run),
        }
        return s.RunDetailSerializer(run, context=context).data


class JobListView(mixins.ListModelMixin, JobAPIView):
    """The team's jobs, each with its latest run (everyone); make one (members and up)."""

    team_permissions = {"GET": VIEW, "POST": MANAGE}
    pagination_class = Cursor

    def get(self, request: Request, team_slug: str) -> Response:
        page = self.paginate_queryset(self.get_queryset()) or []
        context = {"last_runs": selectors.last_runs(self.team, page)}
        return self.get_paginated_response(s.JobSerializer(page, many=True, context=context).data)

    @extend_schema(request=s.JobWriteSerializer, responses={201: s.JobSerializer})
    def post(self, request: Request, team_slug: str) -> Response:
        self._refuse_workload()
        data = s.JobWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with _api_names():
            job = services.job_create(team=self.team, actor=self.actor, **data.validated_data)
        return Response(self._job_body(job.pk), status=status.HTTP_201_CREATED)


class JobDetailView(JobAPIView):
    """One job; change it (runs made before keep their definition); delete it (its open
    runs are cancelled)."""

    team_permissions = {"GET": VIEW, "PATCH": MANAGE, "DELETE": MANAGE}

    def get(self, request: Request, team_slug: str, job_id: int) -> Response:
        return Response(self._job_body(job_id))

    @extend_schema(request=s.JobWriteSerializer, responses={200: s.JobSerializer})
    def patch(self, request: Request, team_slug: str, job_id: int) -> Response:
        self._refuse_workload()
        job = self._job(job_id)
        data = s.JobWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        with _api_names():
            services.job_update(team=self.team, actor=self.actor, job=job, **data.validated_data)
        return Response(self._job_body(job.pk))

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, team_slug: str, job_id: int) -> Response:
        self._refuse_workload()
        services.job_delete(team=self.team, actor=self.actor, job=self._job(job_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


_PLAN_REFUSAL = OpenApiResponse(
    description="The team's plan or spend cap refuses: error.code is plan_machine_type, "
    "plan_concurrency or spend_cap, and error.upgrade_url is where to upgrade."
)


class JobStartView(JobAPIView):
    """Start a run of the job (queued, then placed as its concurrency allows); ``changes``
    edit the definition for this run only."""

    team_permissions = {"POST": MANAGE}

    @extend_schema(
        request=s.RunChangesSerializer,
        responses={202: s.RunDetailSerializer, 402: _PLAN_REFUSAL},
    )
    def post(self, request: Request, team_slug: str, job_id: int) -> Response:
        job = self._job(job_id)
        data = s.RunChangesSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data.get("changes")
        limits = self._run_limits(changes)
        with _api_names():
            run = services.job_run(
                team=self.team,
                actor=self.actor,
                job=job,
                trigger=Run.Trigger.API,
                changes=changes,
                **limits,
            )
        return Response(self._run_body(run), status=status.HTTP_202_ACCEPTED)


class JobRunListView(mixins.ListModelMixin, JobAPIView):
    """A job's runs, newest first."""

    team_permissions = {"GET": VIEW}
    serializer_class = s.RunSerializer
    pagination_class = Cursor

    def get_team_queryset(self) -> QuerySet[Any]:
        return selectors.job_runs(self.team, self._job(self.kwargs["job_id"]))

    def get(self, request: Request, team_slug: str, job_id: int) -> Response:
        page = self.paginate_queryset(self.get_queryset()) or []
        context = {"costs": selectors.costs_of(page)}
        return self.get_paginated_response(s.RunSerializer(page, many=True, context=context).data)


class JobRunDetailView(JobAPIView):
    """One run: its definition as it was, attempts, exit code, duration, cost, the files
    it kept and the versions it made."""

    team_permissions = {"GET": VIEW}
    serializer_class = s.RunDetailSerializer

    def get(self, request: Request, team_slug: str, job_id: int, number: int) -> Response:
        return Response(self._run_body(self._run(self._job(job_id), number)))


class JobRunCancelView(JobAPIView):
    """Cancel an open run: SIGTERM, the job's grace period, then SIGKILL (a queued run ends
    at once). 409 once it has ended."""

    team_permissions = {"POST": MANAGE}
    serializer_class = s.RunDetailSerializer

    @extend_schema(request=None, responses={202: s.RunDetailSerializer})
    def post(self, request: Request, team_slug: str, job_id: int, number: int) -> Response:
        run = self._run(self._job(job_id), number)
        services.run_cancel(team=self.team, actor=self.actor, run=run)
        return Response(self._run_body(run), status=status.HTTP_202_ACCEPTED)


class JobRunRerunView(JobAPIView):
    """A new run with this run's definition (as it was), edited by ``changes``."""

    team_permissions = {"POST": MANAGE}
    serializer_class = s.RunDetailSerializer

    @extend_schema(
        request=s.RunChangesSerializer,
        responses={202: s.RunDetailSerializer, 402: _PLAN_REFUSAL},
    )
    def post(self, request: Request, team_slug: str, job_id: int, number: int) -> Response:
        run = self._run(self._job(job_id), number)
        data = s.RunChangesSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data.get("changes")
        limits = self._run_limits(changes)
        with _api_names():
            again = services.run_rerun(
                team=self.team,
                actor=self.actor,
                run=run,
                changes=changes,
                **limits,
            )
        return Response(self._run_body(again), status=status.HTTP_202_ACCEPTED)


class RunFollower(Follower):
    """A run's stream followed until a status message (the engine's "run" messages,
    apps.jobs.runs.run_published) says the run ended."""

    def _ends(self, row: dict[str, Any]) -> bool:
        return (
            row["seq"] > self.started_at_seq
            and row.get("type") in ("run", "status")
            and row.get("status") in _RUN_ENDED
        )


class JobRunLogsView(JobAPIView):
    """The run's live stream (its log lines and status changes), from its recent buffer.

    ``?after=<seq>`` (with ``&epoch=``) returns only newer messages; ``?follow=1`` keeps
    the response open as NDJSON until the run ends, ``?timeout`` seconds pass, or the
    reader loses access."""

    team_permissions = {"GET": VIEW}
    serializer_class = logs_s.LogsSerializer
    renderer_classes = [*TeamAPIView.renderer_classes, NDJSONRenderer]

    @extend_schema(
        parameters=[logs_s.LogsQuerySerializer],
        responses={
            (200, "application/json"): logs_s.LogsSerializer,
            (200, NDJSON): OpenApiResponse(
                OpenApiTypes.STR,
                description="With follow=1: one message (JSON, with its seq) per line.",
            ),
        },
    )
    def get(self, request: Request, team_slug: str, job_id: int, number: int) -> Any:
        run = self._run(self._job(job_id), number)
        query = logs_s.LogsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        wanted = query.validated_data
        resume = stream_resume(run.stream, wanted["after"], wanted["epoch"])
        if wanted["follow"]:
            follower = RunFollower(
                run.stream,
                after=resume.after,
                seconds=wanted["timeout"],
                stopped=run.status not in OPEN_RUN_STATUSES,
                allowed=self.access_check(),
            )
            return follow_response(request, follower)
        return Response(stream_page(run.stream, resume, wanted["limit"]))
