"""Notebook pages under /t/<team_slug>/notebooks/: the list, one notebook's live page, and
the POSTs that start, stop and change notebooks.

Each action validates what was sent, calls one service (apps.notebooks.services) and goes
back to the notebook's page; a refusal (``NotebookError``) is shown there as an error
message, in the service's words. Notebooks are read through the team-scoped manager, so a
notebook of another team, or a deleted one, is a 404 like a missing one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse

from apps.core.pages import page_action
from apps.datasets.models import DatasetVersion
from apps.notebooks import mounts, services
from apps.notebooks.entitlements import machine_notes
from apps.notebooks.forms import (
    NotebookCreateForm,
    NotebookDeleteForm,
    NotebookDuplicateForm,
    NotebookUpdateForm,
    TeamNotebookSettingsForm,
    with_plan_notes,
)
from apps.notebooks.lifecycle import idle_timeout, status_message
from apps.notebooks.models import (
    Notebook,
    NotebookMount,
    NotebookSession,
    Status,
)
from apps.notebooks.origin import launch_path
from apps.notebooks.selectors import open_session, team_notebook_settings
from apps.notebooks.templates import TEMPLATES
from apps.teams.views import TeamPage

if TYPE_CHECKING:
    from collections.abc import Callable

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
# How many of the team's dataset versions the attach form offers.
MOUNT_CHOICES = 200


def _user(request: HttpRequest) -> User:
    return cast("User", request.user)


def _live_notebooks() -> Any:
    """The team's notebooks that are not deleted (the scope limits them to the team)."""
    return Notebook.objects.filter(deleted_at__isnull=True)


def _first_error(form: Form) -> str:
    for errors in form.errors.values():
        return str(errors[0])
    return "Check what you entered."


class NotebookPage(TeamPage):
    permission = "notebooks.view"

    def notebook(self, notebook_id: int) -> Notebook:
        return cast(
            "Notebook",
            get_object_or_404(_live_notebooks().select_related("machine_type"), pk=notebook_id),
        )


class NotebookAction(NotebookPage):
    """A POST that calls one service, then returns to the notebook's page saying what happened."""

    http_method_names = ["post"]
    permission = "notebooks.manage"

    def attempt(
        self,
        request: HttpRequest,
        notebook: Notebook,
        action: Callable[[], str],
        *,
        then: str = "",
    ) -> HttpResponse:
        """Run ``action`` (one service call returning the success message); show its refusal
        (apps.core.pages.page_action: a plan limit's with the upgrade link).

        On success go to ``then`` (a path) if given, else back to the notebook's page.
        """
        return page_action(request, action, back=self.back_url(notebook), then=then)

    def back_url(self, notebook: Notebook) -> str:
        return reverse(
            "notebooks:detail",
            kwargs={"team_slug": self.team.slug, "notebook_id": notebook.pk},
        )

    def back(self, notebook: Notebook) -> HttpResponse:
        return redirect(self.back_url(notebook))


class NotebookListView(NotebookPage):
    """Every notebook of the team, and the form that makes a new one."""

    template_name = "notebooks/list.html"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        return self.render_list(request, NotebookCreateForm())

    def render_list(self, request: HttpRequest, form: Form, status: int = 200) -> HttpResponse:
        notebooks = list(_live_notebooks().select_related("machine_type", "created_by"))
        for notebook in notebooks:
            template = TEMPLATES.get(notebook.template)
            notebook.template_label = template.name if template else notebook.template
        response = self.page(
            request,
            notebooks=notebooks,
            form=with_plan_notes(form, machine_notes(self.team)),
            section="notebooks",
        )
        response.status_code = status
        return response


class NotebookCreateView(NotebookListView):
    permission = "notebooks.manage"

    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        form = NotebookCreateForm(request.POST)
        if not form.is_valid():
            return self.render_list(request, form, status=400)
        data = form.cleaned_data
        try:
            notebook = services.notebook_create(
                team=self.team,
                actor=_user(request),
                name=data["name"],
                template=data["template"],
                machine_type=data["machine_type"],
                custom_image=data["custom_image"],
                idle_timeout_minutes=data["idle_timeout_minutes"],
            )
        except services.NotebookError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
            return self.render_list(request, form, status=exc.status_code)
        messages.success(request, f"{notebook.name} is ready to start.")
        return redirect("notebooks:detail", team_slug=self.team.slug, notebook_id=notebook.pk)


class NotebookDetailView(NotebookPage):
    """One notebook: its status, start phases, logs (live through static/js/notebook.js)."""

    template_name = "notebooks/detail.html"

    def get(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)
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
        return self.page(
            request,
            notebook=notebook,
            session=session,
            status=status,
            phases=phases,
            step=step,
            percent=status["percent"] if status["phase"] == "pulling" else None,
            template=TEMPLATES.get(notebook.template),
            idle_minutes=idle_timeout(notebook),
            history=history,
            ws_path=f"/ws/teams/{self.team.slug}/notebooks/{notebook.pk}/",
            jupyter_url=launch_path(notebook.pk),
            show_start=SHOW_START,
            show_stop=SHOW_STOP,
            show_running=SHOW_RUNNING,
            update_form=with_plan_notes(
                NotebookUpdateForm(
                    initial={
                        "name": notebook.name,
                        "machine_type": notebook.machine_type_id,
                        "idle_timeout_minutes": notebook.idle_timeout_minutes,
                    },
                    auto_id="update_%s",
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
        )


class NotebookStartView(NotebookAction):
    def post(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)

        def start() -> str:
            services.notebook_start(team=self.team, actor=_user(request), notebook=notebook)
            return f"Starting {notebook.name}."

        return self.attempt(request, notebook, start)


class NotebookStopView(NotebookAction):
    def post(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)

        def stop() -> str:
            session = services.notebook_stop(
                team=self.team,
                actor=_user(request),
                notebook=notebook,
            )
            if session is None:
                return f"{notebook.name} is not running."
            return f"Stopping {notebook.name}; its files are kept."

        return self.attempt(request, notebook, stop)


class NotebookRestartView(NotebookAction):
    def post(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)

        def restart() -> str:
            services.notebook_restart(team=self.team, actor=_user(request), notebook=notebook)
            return f"Restarting {notebook.name}; its files are kept."

        return self.attempt(request, notebook, restart)


class NotebookExtendView(NotebookAction):
    def post(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)

        def extend() -> str:
            session = services.notebook_extend(
                team=self.team,
                actor=_user(request),
                notebook=notebook,
            )
            if session is None:
                return f"{notebook.name} is not running."
            return f"{notebook.name} keeps running; the idle countdown starts again."

        return self.attempt(request, notebook, extend)


class NotebookUpdateView(NotebookAction):
    def post(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)
        form = NotebookUpdateForm(request.POST)
        if not form.is_valid():
            messages.error(request, _first_error(form))
            return self.back(notebook)
        data = form.cleaned_data

        def update() -> str:
            idle = data["idle_timeout_minutes"]
            services.notebook_update(
                team=self.team,
                actor=_user(request),
                notebook=notebook,
                name=data["name"] if "name" in request.POST else None,
                machine_type=data["machine_type"],
                idle_timeout_minutes=idle,
                clear_idle_timeout="idle_timeout_minutes" in request.POST and idle is None,
            )
            return "Saved."

        return self.attempt(request, notebook, update)


class NotebookDuplicateView(NotebookAction):
    def post(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)
        form = NotebookDuplicateForm(request.POST)
        form.is_valid()
        name = form.cleaned_data.get("name", "")
        copy: list[Notebook] = []

        def duplicate() -> str:
            copy.append(
                services.notebook_duplicate(
                    team=self.team,
                    actor=_user(request),
                    notebook=notebook,
                    name=name,
                ),
            )
            return (
                f"{copy[0].name} is a new notebook like {notebook.name}, with a copy of its files."
            )

        response = self.attempt(request, notebook, duplicate)
        if copy:
            return redirect(
                "notebooks:detail",
                team_slug=self.team.slug,
                notebook_id=copy[0].pk,
            )
        return response


class NotebookDeleteView(NotebookAction):
    def post(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)
        form = NotebookDeleteForm(request.POST)
        form.is_valid()

        def delete() -> str:
            services.notebook_delete(
                team=self.team,
                actor=_user(request),
                notebook=notebook,
                confirmation=form.cleaned_data.get("confirmation", ""),
            )
            return f"{notebook.name} was deleted, with its files."

        return self.attempt(
            request,
            notebook,
            delete,
            then=reverse("notebooks:list", kwargs={"team_slug": self.team.slug}),
        )


class NotebookDatasetAttachView(NotebookAction):
    """Mount a dataset version (the team's, or a public one: the service decides)."""

    def post(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)

        def attach() -> str:
            version = mounts.mountable_version(
                team=self.team, version_id=request.POST.get("version", "")
            )
            mount = mounts.mount_add(
                team=self.team,
                actor=_user(request),
                notebook=notebook,
                version=version,
                name=request.POST.get("name", ""),
            )
            when = (
                "after a restart" if open_session(notebook) is not None else "from its next start"
            )
            return (
                f"{version.dataset.name} v{version.number} is at /datasets/{mount.name} "
                f"in {notebook.name} {when}, read-only."
            )

        return self.attempt(request, notebook, attach)


class NotebookDatasetDetachView(NotebookAction):
    def post(
        self, request: HttpRequest, team_slug: str, notebook_id: int, mount_id: int
    ) -> HttpResponse:
        notebook = self.notebook(notebook_id)
        mount = get_object_or_404(NotebookMount.objects.filter(notebook=notebook), pk=mount_id)

        def detach() -> str:
            mounts.mount_remove(
                team=self.team, actor=_user(request), notebook=notebook, mount=mount
            )
            if open_session(notebook) is not None:
                return f"/datasets/{mount.name} goes at the next restart."
            return f"/datasets/{mount.name} was removed."

        return self.attempt(request, notebook, detach)


class TeamNotebookSettingsView(NotebookPage):
    """The team's notebook defaults (idle shutdown)."""

    template_name = "notebooks/settings.html"
    permission = "notebooks.settings"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        row = team_notebook_settings(self.team)
        form = TeamNotebookSettingsForm(initial={"idle_timeout_minutes": row.idle_timeout_minutes})
        return self._render(request, form)

    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        form = TeamNotebookSettingsForm(request.POST)
        if not form.is_valid():
            return self._render(request, form, status=400)
        try:
            services.team_notebook_settings_update(
                team=self.team,
                actor=_user(request),
                idle_timeout_minutes=form.cleaned_data["idle_timeout_minutes"],
            )
        except services.NotebookError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
            return self._render(request, form, status=exc.status_code)
        messages.success(request, "Notebook settings saved.")
        return redirect("notebooks:settings", team_slug=self.team.slug)

    def _render(
        self,
        request: HttpRequest,
        form: TeamNotebookSettingsForm,
        status: int = 200,
    ) -> HttpResponse:
        response = self.page(request, form=form, section="notebooks")
        response.status_code = status
        return response
