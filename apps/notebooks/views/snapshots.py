"""A notebook's snapshots from its pages: "Take a snapshot" (the notebook's page), the
snapshots page (each one's time, reason, state, files, size, what was sent, why one failed)
and "Restore into a copy" (asks a name; on to the new notebook's page)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse

from apps.notebooks import snapshots
from apps.notebooks.errors import NotebookError
from apps.notebooks.selectors import notebook_snapshot, notebook_snapshots
from apps.notebooks.views.notebooks import NotebookAction, NotebookPage, decimal_size

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from apps.notebooks.models import Notebook, NotebookSnapshot


def _row(snapshot: NotebookSnapshot) -> dict[str, Any]:
    return {
        "id": snapshot.pk,
        "at": snapshot.created_at,
        "reason": snapshot.get_reason_display(),
        "state": snapshot.state,
        "state_label": snapshot.get_state_display(),
        "files": snapshot.file_count,
        "size": decimal_size(snapshot.total_bytes),
        "sent": decimal_size(snapshot.sent_bytes),
        "failure": snapshot.failure,
    }


class NotebookSnapshotsView(NotebookPage):
    """The notebook's kept snapshots, newest first."""

    template_name = "notebooks/snapshots.html"

    def get(self, request: HttpRequest, team_slug: str, notebook_id: int) -> HttpResponse:
        notebook = self.notebook(notebook_id)
        rows = [_row(s) for s in notebook_snapshots(notebook)]
        return self.page(request, notebook=notebook, snapshots=rows)


class NotebookSnapshotTakeView(NotebookAction):
    def act(self, request: HttpRequest, notebook: Notebook) -> str:
        snapshots.snapshot_request(team=self.team, actor=self.actor, notebook=notebook)
        return f"Taking a snapshot of {notebook.name}'s files; it keeps running if it runs."


class NotebookSnapshotCopyView(NotebookAction):
    def act(self, request: HttpRequest, notebook: Notebook) -> HttpResponse:
        found = notebook_snapshot(notebook, self.kwargs.get("snapshot_id"))
        if found is None:
            raise NotebookError("This notebook has no such snapshot.")
        copy = snapshots.snapshot_copy(
            team=self.team,
            actor=self.actor,
            snapshot=found,
            name=request.POST.get("name", ""),
        )
        messages.success(
            request,
            f"{copy.name} is a new notebook with the files of {notebook.name}'s snapshot of "
            f"{found.created_at:%d %b %Y %H:%M}; its first start restores them.",
        )
        return redirect("notebooks:detail", team_slug=self.team.slug, notebook_id=copy.pk)

    def back_url(self, notebook: Notebook) -> str:
        return reverse("notebooks:snapshots", args=[self.team.slug, notebook.pk])
