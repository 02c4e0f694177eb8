"""A notebook's name, checked: what a new notebook (made, duplicated, copied from a
snapshot) and a rename take; and the new notebook a duplicate or a snapshot's copy makes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.notebooks.errors import NotebookError
from apps.notebooks.models import Notebook

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team


def notebook_name_clean(team: Team, name: str, *, exclude: int | None = None) -> str:
    """``name`` with its spaces tidied; a NotebookError (field "name") when empty, too
    long, or the name of another live notebook of ``team``."""
    name = " ".join(name.split())
    if not name:
        raise NotebookError("Give the notebook a name.", field="name")
    if len(name) > Notebook._meta.get_field("name").max_length:  # type: ignore[operator]
        raise NotebookError("A name is at most 80 characters.", field="name")
    taken = Notebook.objects.for_team(team).filter(name=name, deleted_at__isnull=True)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise NotebookError(f"This team already has a notebook called {name}.", field="name")
    return name


def notebook_like(source: Notebook, *, team: Team, actor: User, name: str) -> Notebook:
    """A new stopped notebook of ``team`` named ``name`` (checked) with ``source``'s template,
    image, machine type, idle policy and secrets, and none of its files yet: the caller
    gives it those (a copy of the volume, a snapshot's copy)."""
    return Notebook.objects.for_team(team).create(
        team=team,
        name=notebook_name_clean(team, name),
        template=source.template,
        custom_image=source.custom_image,
        machine_type=source.machine_type,
        idle_timeout_minutes=source.idle_timeout_minutes,
        secrets=source.secrets,
        created_by=actor,
    )
