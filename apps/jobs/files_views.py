"""A run's kept files for the team's members, on Lattice's origin: each as a download (never
rendered here), and the executed notebook's way to the results origin (apps.jobs.results)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import Http404
from django.shortcuts import redirect
from django.utils import timezone
from django.views import View

from apps.datasets.api.views import file_response
from apps.jobs.models import Run, RunFile
from apps.jobs.results import result_url, ticket_issue
from apps.teams.scope import TeamViewMixin

if TYPE_CHECKING:
    from django.http import FileResponse, HttpRequest, HttpResponse


def _kept(team_id: int, run_id: int) -> Run:
    run = Run.objects.for_team(team_id).filter(pk=run_id, job__deleted_at__isnull=True).first()
    if run is None:
        raise Http404("No such run.")
    return run


class RunFileView(TeamViewMixin, View):
    """One kept file of a run, as a download: whatever it holds, a browser saves it."""

    def get(self, request: HttpRequest, team_slug: str, run_id: int, file_id: int) -> FileResponse:
        run = _kept(self.team.pk, run_id)
        row = (
            RunFile.objects.for_team(self.team)
            .filter(run=run, pk=file_id, expires_at__gt=timezone.now())
            .select_related("blob")
            .first()
        )
        if row is None:
            raise Http404("No such file, or it is no longer kept.")
        response = file_response(row)
        # Never rendered on Lattice's origin, whatever its name says it is.
        response["Content-Type"] = "application/octet-stream"
        response["X-Content-Type-Options"] = "nosniff"
        response["Content-Security-Policy"] = "sandbox"
        return response


class RunNotebookView(TeamViewMixin, View):
    """The executed notebook: a single-use ticket, and on to the results origin to see it."""

    def get(self, request: HttpRequest, team_slug: str, run_id: int) -> HttpResponse:
        run = _kept(self.team.pk, run_id)
        row = (
            RunFile.objects.for_team(self.team)
            .filter(run=run, kind=RunFile.Kind.RESULT, expires_at__gt=timezone.now())
            .first()
        )
        if row is None:
            raise Http404("This run kept no executed notebook, or it is no longer kept.")
        ticket = ticket_issue(user=request.user, run_file=row)  # type: ignore[arg-type]
        response = redirect(
            result_url(ticket, lattice_host=request.get_host(), secure=request.is_secure())
        )
        response["Referrer-Policy"] = "no-referrer"
        response["Cache-Control"] = "no-store"
        return response
