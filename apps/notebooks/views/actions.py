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
from apps.teams.forms import offer_secret_names

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.http import HttpRequest, HttpResponse

    from apps.notebooks.models import Notebook


class _OneCall(NotebookAction):
    """An action that is one service call on the notebook and a sentence: ``done`` when it
    acted, ``idle`` when the service returned None (nothing was running)."""

    service: Callable[..., object]
    done = ""
    idle = "{name} is not running."

    def act(self, request: HttpRequest, notebook: Notebook) -> str:
        result = type(self).service(team=self.team, actor=self.actor, notebook=notebook)
        return (self.idle if result is None else self.done).format(name=notebook.name)


class NotebookStartView(_OneCall):
    service = staticmethod(services.notebook_start)
    done = "Starting {name}."


class NotebookStopView(_OneCall):
    service = staticmethod(services.notebook_stop)
    done = "Stopping {name}; its files are kept."


class NotebookRestartView(_OneCall):
    service = staticmethod(services.notebook_restart)
    # The service returns nothing: a restart always says it restarts.
    done = idle = "Restarting {name}; its files are kept."


class NotebookExtendView(_OneCall):
    service = staticmethod(services.notebook_extend)
    done = "{name} keeps running; the idle countdown starts again."


class NotebookUpdateView(NotebookAction):
    def act(self, request: HttpRequest, notebook: Notebook) -> str | HttpResponse:
        form = offer_secret_names(NotebookUpdateForm(request.POST), self.team)
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
            # Unchecking every box sends nothing: the form says it showed them.
            secrets=(data.get("secrets") or []) if "secrets_shown" in request.POST else None,
            **{f: data[f] for f in ("git_url", "git_ref", "git_secret") if f in request.POST},
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
