"""Saving a folder of the running notebook as a model version, from its page: the form
(apps.notebooks.saves.notebook_save_model) and the live list of its saves, which the page
asks for again every second while one is under way (htmx)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import messages
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse

from apps.core.errors import ServiceError
from apps.core.pages import show_refusal
from apps.models.models import ModelVersion
from apps.notebooks.saves import notebook_save_model, saves_context
from apps.notebooks.views.notebooks import NotebookDetailView, NotebookPage

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from apps.notebooks.models import Notebook


class NotebookSaveModelView(NotebookDetailView):
    """The save form's POST: on success back to the notebook's page saying so; a refusal
    re-renders the page (its status, 400 for a bad field) with the error next to the field
    it names and what was typed kept."""

    http_method_names = ["post"]
    permission = "notebooks.manage"

    def post(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)
        values = {
            name: request.POST.get(name, "").strip()
            for name in ("folder", "model", "model_name", "format", "message")
        }
        try:
            ticket = notebook_save_model(
                team=self.team,
                actor=self.actor,
                notebook=notebook,
                folder=values["folder"],
                model=values["model"],
                model_name=values["model_name"],
                message=values["message"],
                format=values["format"] or ModelVersion.Format.OTHER,
            )
        except ServiceError as refusal:
            if refusal.upgrade_url:
                show_refusal(request, refusal)
            field = {"name": "model_name"}.get(refusal.field or "", refusal.field or "")
            field = field if field in values else "form"
            return self.detail(
                request,
                notebook,
                http_status=refusal.status_code,
                save_values=values,
                save_errors={field: str(refusal)},
            )
        messages.success(
            request,
            f"Saving {ticket.folder} as a new version of {ticket.saved_model.name}; "
            f"{notebook.name} keeps running.",
        )
        return redirect(self.back_url(notebook))

    def back_url(self, notebook: Notebook) -> str:
        return reverse("notebooks:detail", args=[self.team.slug, notebook.pk])


class NotebookSavesView(NotebookPage):
    """The notebook's latest saves (templates/notebooks/_saves.html), for the page to poll."""

    def get(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)
        return TemplateResponse(
            request,
            "notebooks/_saves.html",
            {"team": self.team, "notebook": notebook, **saves_context(notebook)},
        )
