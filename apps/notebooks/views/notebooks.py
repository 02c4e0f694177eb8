"""The notebook list, one notebook's live page, and the base classes of every notebook page
and action (apps.notebooks.views)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse

from apps.core.errors import ServiceError
from apps.core.pages import page_action, refusal_on_form
from apps.datasets.models import DatasetVersion
from apps.machines.availability import machine_type_offers
from apps.models.models import Model, ModelVersion
from apps.notebooks import mounts, services
from apps.notebooks.entitlements import machine_notes
from apps.notebooks.forms import (
    NotebookCreateForm,
    NotebookDeleteForm,
    NotebookDuplicateForm,
    NotebookUpdateForm,
    with_plan_notes,
)
from apps.notebooks.lifecycle import idle_timeout, status_message
from apps.notebooks.models import Notebook, NotebookSession, Status
from apps.notebooks.origin import launch_path
from apps.notebooks.saves import saves_context
from apps.notebooks.selectors import (
    files_last_saved,
    open_session,
    open_sessions,
    running_costs,
)
from apps.notebooks.templates import TEMPLATES
from apps.notebooks.volumes import drain_banner
from apps.teams.forms import offer_secret_names
from apps.teams.views import TeamPage

if TYPE_CHECKING:
    from django.forms import Form
    from django.http import HttpRequest, HttpResponse

    from apps.accounts.models import User

# The steps of the phase bar, and the step each status stands at.
PHASES = [
    ("queued", "Queued"),
    ("placed", "Placed"),
    ("pulling", "Pulling image"),
    ("starting", "Starting"),
    ("waiting", "Waiting for Jupyter"),
    ("ready", "Ready"),
]
_STEP_OF_STATUS = {
    Status.QUEUED: "queued",
    Status.SCHEDULED: "placed",
    Status.PULLING: "pulling",
    Status.STARTING: "starting",
    Status.RUNNING: "ready",
}
# Which buttons each status offers (static/js/notebook.js reads the same lists from the page).
SHOW_START = "stopped failed lost"
SHOW_STOP = "queued scheduled pulling starting running"
SHOW_RUNNING = "running"
SHOW_NOT_RUNNING = " ".join(status for status in Status.values if status != Status.RUNNING)
# How many of the team's dataset versions the attach form offers.
MOUNT_CHOICES = 200
# How many of the team's models the save form offers.
MODEL_CHOICES = 200


def _live_notebooks() -> Any:
    """The team's notebooks that are not deleted (the scope limits them to the team)."""
    return Notebook.objects.filter(deleted_at__isnull=True)


KILO = 1000


def decimal_size(size: int) -> str:
    """Bytes in decimal units with one decimal: "2.1 GB", "812.0 kB", "12 bytes"."""
    if size < KILO:
        return f"{size} byte{'s' if size != 1 else ''}"
    value = float(size)
    for unit in ("kB", "MB", "GB"):
        value /= KILO
        if value < KILO:
            return f"{value:.1f} {unit}"
    return f"{value / KILO:.1f} TB"


def files_saved_context(notebook: Notebook) -> dict[str, Any]:
    """What the notebook's page says of its files' last save: ``files_saved`` is None
    ("not saved yet") or {"at", "count", "size"} of the newest ready snapshot."""
    last = files_last_saved(notebook)
    if last is None:
        return {"files_saved": None}
    return {
        "files_saved": {
            "at": last.finished_at or last.created_at,
            "count": last.file_count,
            "size": decimal_size(last.total_bytes),
        }
    }


class NotebookPage(TeamPage):
    permission = "notebooks.view"

    @property
    def actor(self) -> User:
        """The person asking (TeamViewMixin lets no visitor this far)."""
        return cast("User", self.request.user)

    def notebook(self, notebook_id: int) -> Notebook:
        return cast(
            "Notebook",
            get_object_or_404(_live_notebooks().select_related("machine_type"), pk=notebook_id),
        )

    def page_with_status(self, request: HttpRequest, status: int, **context: Any) -> HttpResponse:
        """The page, answered with ``status`` (400 or the refusal's for a form sent back)."""
        response = self.page(request, **context)
        response.status_code = status
        return response


class NotebookAction(NotebookPage):
    """A POST on one notebook that calls one service, then returns to the notebook's page
    saying what happened (apps.core.pages.page_action: a refusal in the service's words, a
    plan limit's with the upgrade link).

    Subclasses implement ``act``: the service call, returning the success message (or a
    response of its own).
    """

    http_method_names = ["post"]
    permission = "notebooks.manage"

    def post(
        self, request: HttpRequest, team_slug: str, notebook_id: int, **route: Any
    ) -> HttpResponse:
        notebook = self.notebook(notebook_id)
        return page_action(
            request,
            lambda: self.act(request, notebook),
            back=self.back_url(notebook),
            then=self.then_url(),
        )

    def act(self, request: HttpRequest, notebook: Notebook) -> str | HttpResponse:
        raise NotImplementedError

    def then_url(self) -> str:
        """Where a success goes ("": back to the notebook's page)."""
        return ""

    def back_url(self, notebook: Notebook) -> str:
        return reverse(
            "notebooks:detail",
            kwargs={"team_slug": self.team.slug, "notebook_id": notebook.pk},
        )

    def back(self, notebook: Notebook) -> HttpResponse:
        return redirect(self.back_url(notebook))


class NotebookListView(NotebookPage):
    """Every notebook of the team, with its status, uptime, cost so far and actions."""

    template_name = "notebooks/list.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        notebooks = list(_live_notebooks().select_related("machine_type", "created_by"))
        # Each row's open session (uptime) and what it has cost so far: one query for the
        # sessions, one read of their prices, however many rows.
        sessions = open_sessions(self.team, notebooks)
        costs = running_costs(sessions.values())
        for notebook in notebooks:
            template = TEMPLATES.get(notebook.template)
            notebook.template_label = template.name if template else notebook.template
            session = sessions.get(notebook.pk)
            running = session is not None and session.status == Status.RUNNING
            notebook.up_since = session.started_at if running and session else None
            notebook.cost = costs.get(session.pk) if costs is not None and session else None
            notebook.open_url = launch_path(notebook.pk) if running else ""
        return self.page(
            request,
            notebooks=notebooks,
            running=any(notebook.up_since for notebook in notebooks),
            costed=costs is not None,
            show_start=SHOW_START,
            show_stop=SHOW_STOP,
            section="notebooks",
        )


class NotebookCreateView(NotebookPage):
    """Making a notebook, as its own step: the form, with each machine type's specs, price,
    what the plan says of it and whether a host here can run it now."""

    permission = "notebooks.manage"
    template_name = "notebooks/create.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        return self.render_form(request, offer_secret_names(NotebookCreateForm(), self.team))

    def render_form(self, request: HttpRequest, form: Form, status: int = 200) -> HttpResponse:
        notes = machine_notes(self.team)
        chosen = form["machine_type"].value()
        machines: list[dict[str, Any]] = [
            {
                "offer": offer,
                "note": notes.get(offer.machine_type.pk, ""),
                "checked": str(offer.machine_type.pk) == str(chosen),
            }
            for offer in machine_type_offers()
        ]
        if machines and not any(m["checked"] for m in machines):
            # The first that can start now (else the first) is chosen until the person picks.
            first = next(
                (m for m in machines if m["offer"].availability.state != "unavailable"), machines[0]
            )
            first["checked"] = True
        return self.page_with_status(
            request,
            status,
            form=with_plan_notes(form, notes),
            machines=machines,
            section="notebooks",
        )

    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        form = offer_secret_names(NotebookCreateForm(request.POST), self.team)
        if not form.is_valid():
            return self.render_form(request, form, status=400)
        data = form.cleaned_data
        try:
            notebook = services.notebook_create(
                team=self.team,
                actor=self.actor,
                name=data["name"],
                template=data["template"],
                machine_type=data["machine_type"],
                custom_image=data["custom_image"],
                idle_timeout_minutes=data["idle_timeout_minutes"],
                secrets=data.get("secrets") or [],
                git_url=data["git_url"],
                git_ref=data["git_ref"],
                git_secret=data["git_secret"],
            )
        except ServiceError as exc:
            return self.render_form(request, form, status=refusal_on_form(request, form, exc))
        messages.success(request, f"{notebook.name} is ready to start.")
        return redirect("notebooks:detail", team_slug=self.team.slug, notebook_id=notebook.pk)


class NotebookDetailView(NotebookPage):
    """One notebook: its status, start phases, logs (live through static/js/notebook.js)."""

    template_name = "notebooks/detail.html"

    def get(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        return self.detail(request, self.notebook(notebook_id))

    def detail(
        self, request: HttpRequest, notebook: Notebook, *, http_status: int = 200, **extra: Any
    ) -> HttpResponse:
        """The page, with ``extra`` context (a form sent back with its errors) and
        ``status``."""
        session = open_session(notebook)
        status = status_message(notebook, session)
        # status_message already read the latest event: its phase and percent.
        step = _STEP_OF_STATUS.get(Status(notebook.status), "") if session is not None else ""
        if step == "starting" and status["phase"] == "waiting":
            step = "waiting"
        step_names = [name for name, _ in PHASES]
        current = step_names.index(step) if step else -1
        phases = [
            {
                "name": name,
                "label": label,
                "state": (
                    "done"
                    if current >= 0 and (i < current or step == "ready")
                    else "current"
                    if i == current
                    else ""
                ),
            }
            for i, (name, label) in enumerate(PHASES)
        ]
        history = NotebookSession.objects.filter(notebook=notebook).order_by("-pk")[:10]
        # The team's ready versions, latest first, to attach (public ones come from the catalogue).
        versions = (
            DatasetVersion.objects.filter(status=DatasetVersion.Status.READY)
            .select_related("dataset")
            .order_by("-ready_at", "-pk")[:MOUNT_CHOICES]
        )
        response = self.page(
            request,
            notebook=notebook,
            session=session,
            status=status,
            phases=phases,
            step=step,
            percent=status["percent"] if status["phase"] == "pulling" else None,
            template=TEMPLATES.get(notebook.template),
            idle_minutes=idle_timeout(notebook),
            drain_banner=drain_banner(session),
            idle_statuses=SHOW_STOP.split(),
            history=history,
            **saves_context(notebook),
            **files_saved_context(notebook),
            save_models=Model.objects.order_by("name")[:MODEL_CHOICES],
            save_formats=ModelVersion.Format.choices,
            ws_path=f"/ws/teams/{self.team.slug}/notebooks/{notebook.pk}/",
            jupyter_url=launch_path(notebook.pk),
            show_start=SHOW_START,
            show_stop=SHOW_STOP,
            show_running=SHOW_RUNNING,
            show_not_running=SHOW_NOT_RUNNING,
            update_form=with_plan_notes(
                offer_secret_names(
                    NotebookUpdateForm(
                        initial={
                            "name": notebook.name,
                            "machine_type": notebook.machine_type_id,
                            "idle_timeout_minutes": notebook.idle_timeout_minutes,
                            "secrets": notebook.secrets,
                            "git_url": notebook.git_url,
                            "git_ref": notebook.git_ref,
                            "git_secret": notebook.git_secret,
                        },
                        auto_id="update_%s",
                    ),
                    self.team,
                ),
                machine_notes(self.team),
            ),
            duplicate_form=NotebookDuplicateForm(
                initial={"name": f"{notebook.name} (copy)"},
                auto_id="duplicate_%s",
            ),
            delete_form=NotebookDeleteForm(auto_id="delete_%s"),
            mounts=[
                {"mount": m, "available": mounts.mount_available(m)}
                for m in mounts.notebook_mounts(notebook)
            ],
            mount_versions=versions,
            section="notebooks",
            **extra,
        )
        response.status_code = http_status
        return response
