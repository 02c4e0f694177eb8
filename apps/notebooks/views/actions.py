"""What people do to one notebook from its page: start, stop, restart, keep it running,
change, duplicate and delete it. Each is one service call (apps.notebooks.services); the base
class (views.notebooks.NotebookAction) shows its refusal or says what happened."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse

from apps.core.pages import first_error
from apps.notebooks import services
from apps.notebooks.forms import NotebookDeleteForm, NotebookDuplicateForm, NotebookUpdateForm
from apps.notebooks.views.notebooks import NotebookAction

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from apps.notebooks.models import Notebook


class NotebookStartView(NotebookAction):
    def act(self, request: HttpRequest, notebook: Notebook) -> str:
        services.notebook_start(team=self.team, actor=self.actor, notebook=notebook)
        return f"Starting {notebook.name}."


class NotebookStopView(NotebookAction):
    def act(self, request: HttpRequest, notebook: Notebook) -> str:
        session = services.notebook_stop(team=self.team, actor=self.actor, notebook=notebook)
        if session is None:
            return f"{notebook.name} is not running."
        return f"Stopping {notebook.name}; its files are kept."


class NotebookRestartView(NotebookAction):
    def act(self, request: HttpRequest, notebook: Notebook) -> str:
        services.notebook_restart(team=self.team, actor=self.actor, notebook=notebook)
        return f"Restarting {notebook.name}; its files are kept."


class NotebookExtendView(NotebookAction):
    def act(self, request: HttpRequest, notebook: Notebook) -> str:
        session = services.notebook_extend(team=self.team, actor=self.actor, notebook=notebook)
        if session is None:
            return f"{notebook.name} is not running."
        return f"{notebook.name} keeps running; the idle countdown starts again."


class NotebookUpdateView(NotebookAction):
    def act(self, request: HttpRequest, notebook: Notebook) -> str | HttpResponse:
        form = NotebookUpdateForm(request.POST)
        if not form.is_valid():
            messages.error(request, first_error(form.errors, "Check what you entered."))
            return self.back(notebook)
        data = form.cleaned_data
        idle = data["idle_timeout_minutes"]
        services.notebook_update(
            team=self.team,
            actor=self.actor,
            notebook=notebook,
            name=data["name"] if "name" in request.POST else None,
            machine_type=data["machine_type"],
            idle_timeout_minutes=idle,
            clear_idle_timeout="idle_timeout_minutes" in request.POST and idle is None,
        )
        return "Saved."


class NotebookDuplicateView(NotebookAction):
    def act(self, request: HttpRequest, notebook: Notebook) -> HttpResponse:
        form = NotebookDuplicateForm(request.POST)
        form.is_valid()
        copy = services.notebook_duplicate(
            team=self.team,
            actor=self.actor,
            notebook=notebook,
            name=form.cleaned_data.get("name", ""),
        )
        # On to the copy's page rather than back to this one.
        messages.success(
            request,
            f"{copy.name} is a new notebook like {notebook.name}, with a copy of its files.",
        )
        return redirect("notebooks:detail", team_slug=self.team.slug, notebook_id=copy.pk)


class NotebookDeleteView(NotebookAction):
    def act(self, request: HttpRequest, notebook: Notebook) -> str:
        form = NotebookDeleteForm(request.POST)
        form.is_valid()
        services.notebook_delete(
            team=self.team,
            actor=self.actor,
            notebook=notebook,
            confirmation=form.cleaned_data.get("confirmation", ""),
        )
        return f"{notebook.name} was deleted, with its files."

    def then_url(self) -> str:
        return reverse("notebooks:list", kwargs={"team_slug": self.team.slug})
