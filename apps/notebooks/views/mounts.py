"""A notebook's dataset mounts from its page: attach a version (the team's, or a public one:
apps.notebooks.mounts decides) and remove one. Either takes effect at the next start."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.shortcuts import get_object_or_404

from apps.notebooks import mounts
from apps.notebooks.models import NotebookMount
from apps.notebooks.selectors import open_session
from apps.notebooks.views.notebooks import NotebookAction

if TYPE_CHECKING:
    from django.http import HttpRequest

    from apps.notebooks.models import Notebook


class NotebookDatasetAttachView(NotebookAction):
    """Mount a dataset version (the team's, or a public one: the service decides)."""

    def act(self, request: HttpRequest, notebook: Notebook) -> str:
        version = mounts.mountable_version(
            team=self.team, version_id=request.POST.get("version", "")
        )
        mount = mounts.mount_add(
            team=self.team,
            actor=self.actor,
            notebook=notebook,
            version=version,
            name=request.POST.get("name", ""),
        )
        when = "after a restart" if open_session(notebook) is not None else "from its next start"
        return (
            f"{version.dataset.name} v{version.number} is at /datasets/{mount.name} "
            f"in {notebook.name} {when}, read-only."
        )


class NotebookDatasetDetachView(NotebookAction):
    def act(self, request: HttpRequest, notebook: Notebook) -> str:
        mount = get_object_or_404(
            NotebookMount.objects.filter(notebook=notebook), pk=self.kwargs["mount_id"]
        )
        mounts.mount_remove(team=self.team, actor=self.actor, notebook=notebook, mount=mount)
        if open_session(notebook) is not None:
            return f"/datasets/{mount.name} goes at the next restart."
        return f"/datasets/{mount.name} was removed."
