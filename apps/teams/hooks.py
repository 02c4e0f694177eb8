"""What the apps above teams plug into it (apps.core.hooks), from their ``AppConfig.ready()``.

- ``overview_notebooks``: the team's notebooks as its overview page shows them (a few, and
  the counts). Notebooks
  sit above teams in the layer order, so the notebooks app registers the answer; with none
  registered the overview says the team has no notebooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from apps.teams.models import Team


@dataclass(frozen=True)
class OverviewItem:
    """One notebook on the team's overview: its name, where it lives, its status (the code
    for the badge's colour, and the words a person reads)."""

    name: str
    url: str
    status: str
    status_label: str


@dataclass(frozen=True)
class Overview:
    """The team's notebooks on its overview: the first few (running ones first) and how many
    there are, and of those how many run."""

    items: list[OverviewItem]
    total: int
    running: int


def _no_notebooks(team: Team, *, limit: int) -> Overview:
    return Overview(items=[], total=0, running=0)


overview_notebooks: Hook[..., Overview] = Hook(
    "the team's notebooks on its overview", default=_no_notebooks
)
