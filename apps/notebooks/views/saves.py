"""Saving a folder of the running notebook as a model version, from its page: the form
(apps.notebooks.saves.notebook_save_model) and the live list of its saves, which the page
asks for again every second while one is under way (htmx)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.template.response import TemplateResponse

from apps.models.models import ModelVersion
from apps.notebooks.saves import notebook_save_model, saves_context
from apps.notebooks.views.notebooks import NotebookAction, NotebookPage

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from apps.notebooks.models import Notebook


class NotebookSaveModelView(NotebookAction):
    def act(self, request: HttpRequest, notebook: Notebook) -> str:
        ticket = notebook_save_model(
            team=self.team,
            actor=self.actor,
            notebook=notebook,
            folder=request.POST.get("folder", ""),
            model=request.POST.get("model", ""),
            model_name=request.POST.get("model_name", ""),
            message=request.POST.get("message", ""),
            format=request.POST.get("format") or ModelVersion.Format.OTHER,
        )
        return (
            f"Saving {ticket.folder} as a new version of {ticket.model.name}; "
            f"{notebook.name} keeps running."
        )


class NotebookSavesView(NotebookPage):
    """The notebook's latest saves (templates/notebooks/_saves.html), for the page to poll."""

    def get(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)
        return TemplateResponse(
            request,
            "notebooks/_saves.html",
            {"team": self.team, "notebook": notebook, **saves_context(notebook)},
        )
