"""The team's notebook defaults (its idle shutdown), for those who may change them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import messages
from django.shortcuts import redirect

from apps.core.pages import refusal_on_form
from apps.notebooks import services
from apps.notebooks.errors import NotebookError
from apps.notebooks.forms import TeamNotebookSettingsForm
from apps.notebooks.selectors import team_notebook_settings
from apps.notebooks.views.notebooks import NotebookPage

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse


class TeamNotebookSettingsView(NotebookPage):
    """The team's notebook defaults (idle shutdown)."""

    template_name = "notebooks/settings.html"
    permission = "notebooks.settings"

    def get(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        row = team_notebook_settings(self.team)
        form = TeamNotebookSettingsForm(initial={"idle_timeout_minutes": row.idle_timeout_minutes})
        return self.page_with_status(request, 200, form=form, section="settings")

    def post(self, request: HttpRequest, team_slug: str) -> HttpResponse:
        form = TeamNotebookSettingsForm(request.POST)
        if not form.is_valid():
            return self.page_with_status(request, 400, form=form, section="settings")
        try:
            services.team_notebook_settings_update(
                team=self.team,
                actor=self.actor,
                idle_timeout_minutes=form.cleaned_data["idle_timeout_minutes"],
            )
        except NotebookError as exc:
            status = refusal_on_form(request, form, exc)
            return self.page_with_status(request, status, form=form, section="settings")
        messages.success(request, "Notebook settings saved.")
        return redirect("notebooks:settings", team_slug=self.team.slug)
