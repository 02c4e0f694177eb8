"""Job pages: /t/<team_slug>/jobs/... (the list with each job's last run, making and
changing a job, running it, its runs, one run's live page, cancel, re-run as it was or
edited, delete).

Views parse a form and call one service (apps.jobs.services); a refusal is shown next to the
field it names, or as a message on the page it returns to (apps.core.pages). A run's page
is live over its websocket (apps.jobs.consumers, static/js/job-run.js).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.urls import reverse

from apps.core.errors import ServiceError
from apps.core.models import AuditEntry
from apps.core.pages import page_action, refusal_on_form
from apps.jobs import selectors, services
from apps.jobs.forms import JobForm, RerunForm
from apps.jobs.models import OPEN_RUN_STATUSES, Job, Run
from apps.jobs.outputs import outputs_described
from apps.teams.views import TeamPage

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from apps.accounts.models import User

RUNS_SHOWN = 50
# What the schedule did without a run to show for it (skips, refusals), newest first.
SCHEDULE_NOTES = 5


class JobPage(TeamPage):
    permission = services.VIEW

    @property
    def actor(self) -> User:
        return cast("User", self.request.user)

    def job(self, job_id: int) -> Job:
        job = selectors.job_of(self.team, job_id)
        if job is None:
            raise Http404("No such job.")
        return job

    def run(self, job: Job, number: int) -> Run:
        run = selectors.run_of(self.team, job, number)
        if run is None:
            raise Http404("No such run.")
        return run

    def job_url(self, job: Job) -> str:
        return reverse("jobs:detail", args=[self.team.slug, job.pk])

    def run_url(self, run: Run) -> str:
        return reverse("jobs:run", args=[self.team.slug, run.job_id, run.number])

    def form_page(self, request: HttpRequest, status: int = 200, **context: Any) -> HttpResponse:
        response = self.page(request, section="jobs", **context)
        response.status_code = status
        return response


class JobListView(JobPage):
    """Every job of the team with its last run's state."""

    template_name = "jobs/list.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        jobs = list(selectors.live_jobs(self.team))
        last = selectors.last_runs(self.team, jobs)
        rows = [{"job": j, "run": last.get(j.pk)} for j in jobs]
        return self.page(request, rows=rows, section="jobs")


class JobCreateView(JobPage):
    permission = services.MANAGE
    template_name = "jobs/form.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        initial: dict[str, Any] = {}
        notebook = request.GET.get("notebook", "")
        if notebook.isdigit():
            initial = {"source": Job.Source.NOTEBOOK, "notebook": int(notebook)}
        return self.form_page(request, form=JobForm(team=self.team, initial=initial))

    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        form = JobForm(request.POST, team=self.team)
        if not form.is_valid():
            return self.form_page(request, 400, form=form)
        try:
            job = services.job_create(team=self.team, actor=self.actor, **form.service_fields())
        except ServiceError as refusal:
            return self.form_page(request, refusal_on_form(request, form, refusal), form=form)
        messages.success(request, f"{job.name} is saved. Run it when you are ready.")
        return redirect(self.job_url(job))


class JobEditView(JobPage):
    permission = services.MANAGE
    template_name = "jobs/form.html"

    def get(self, request: HttpRequest, team_slug: str, job_id: int) -> HttpResponse:
        job = self.job(job_id)
        form = JobForm(team=self.team, initial=JobForm.initial_of(job))
        return self.form_page(request, form=form, job=job)

    def post(self, request: HttpRequest, team_slug: str, job_id: int) -> HttpResponse:
        job = self.job(job_id)
        form = JobForm(request.POST, team=self.team)
        if not form.is_valid():
            return self.form_page(request, 400, form=form, job=job)
        try:
            services.job_update(team=self.team, actor=self.actor, job=job, **form.service_fields())
        except ServiceError as refusal:
            status = refusal_on_form(request, form, refusal)
            return self.form_page(request, status, form=form, job=job)
        messages.success(request, "Saved. Runs made before keep the definition they ran with.")
        return redirect(self.job_url(job))


class JobDetailView(JobPage):
    """A job: its definition, its schedule (and what the schedule skipped), its runs."""

    template_name = "jobs/detail.html"

    def get(self, request: HttpRequest, team_slug: str, job_id: int) -> HttpResponse:
        job = self.job(job_id)
        runs = list(selectors.job_runs(self.team, job)[:RUNS_SHOWN])
        notes = (
            AuditEntry.objects.for_team(self.team)
            .filter(
                action__in=("job.schedule_skipped", "job.schedule_refused"),
                target=job.name,
                created_at__gte=job.created_at,
            )
            .order_by("-pk")[:SCHEDULE_NOTES]
        )
        costs = selectors.costs_of(runs)
        rows = [
            {
                "run": r,
                "duration": selectors.run_duration(r),
                "cost": None if costs is None else costs.get(r.pk),
            }
            for r in runs
        ]
        return self.page(
            request,
            job=job,
            rows=rows,
            schedule_notes=list(notes),
            section="jobs",
        )


class _JobAction(JobPage):
    """A POST on one job (or run) that calls one service, then on to a page."""

    http_method_names = ["post"]
    permission = services.MANAGE


class JobRunView(_JobAction):
    def post(self, request: HttpRequest, team_slug: str, job_id: int) -> HttpResponse:
        job = self.job(job_id)

        def act() -> HttpResponse:
            run = services.job_run(team=self.team, actor=self.actor, job=job)
            messages.success(request, f"Run {run.number} of {job.name} is queued.")
            return redirect(self.run_url(run))

        return page_action(request, act, back=self.job_url(job))


class JobDeleteView(_JobAction):
    def post(self, request: HttpRequest, team_slug: str, job_id: int) -> HttpResponse:
        job = self.job(job_id)

        def act() -> str:
            services.job_delete(team=self.team, actor=self.actor, job=job)
            return f"{job.name} is deleted; its open runs are being cancelled."

        return page_action(
            request, act, back=self.job_url(job), then=reverse("jobs:list", args=[team_slug])
        )


class RunDetailView(JobPage):
    """One run, live: its phases and log over the websocket, exit code, duration, cost,
    the files it kept and the versions it made."""

    template_name = "jobs/run.html"

    def get(self, request: HttpRequest, team_slug: str, job_id: int, number: int) -> HttpResponse:
        job = self.job(job_id)
        run = self.run(job, number)
        costs = selectors.costs_of([run])
        return self.page(
            request,
            job=job,
            run=run,
            open=run.status in OPEN_RUN_STATUSES,
            attempts=selectors.run_attempts(self.team, run),
            outputs=outputs_described(run),
            duration=selectors.run_duration(run),
            cost=None if costs is None else costs.get(run.pk),
            ws_path=f"/ws/teams/{self.team.slug}/jobs/runs/{run.pk}/",
            section="jobs",
        )


class RunCancelView(_JobAction):
    def post(self, request: HttpRequest, team_slug: str, job_id: int, number: int) -> HttpResponse:
        run = self.run(self.job(job_id), number)

        def act() -> str:
            services.run_cancel(team=self.team, actor=self.actor, run=run)
            return f"Run {run.number} is being cancelled."

        return page_action(request, act, back=self.run_url(run))


class RunRerunView(JobPage):
    """Re-run: as it was (a POST with nothing), or edited (the form, filled in with the
    run's definition)."""

    permission = services.MANAGE
    template_name = "jobs/rerun.html"

    def get(self, request: HttpRequest, team_slug: str, job_id: int, number: int) -> HttpResponse:
        job = self.job(job_id)
        run = self.run(job, number)
        form = RerunForm(team=self.team, initial=RerunForm.initial_of(None, run.definition))
        return self.form_page(request, form=form, job=job, run=run)

    def post(self, request: HttpRequest, team_slug: str, job_id: int, number: int) -> HttpResponse:
        job = self.job(job_id)
        run = self.run(job, number)
        changes = None
        form = None
        if request.POST.get("edited"):
            form = RerunForm(request.POST, team=self.team)
            if not form.is_valid():
                return self.form_page(request, 400, form=form, job=job, run=run)
            changes = form.service_fields()
        try:
            again = services.run_rerun(team=self.team, actor=self.actor, run=run, changes=changes)
        except ServiceError as refusal:
            if form is None:
                return page_action(request, _raise(refusal), back=self.run_url(run))
            status = refusal_on_form(request, form, refusal)
            return self.form_page(request, status, form=form, job=job, run=run)
        messages.success(request, f"Run {again.number} re-runs run {run.number}.")
        return redirect(self.run_url(again))


def _raise(refusal: ServiceError) -> Any:
    def act() -> str:
        raise refusal

    return act
