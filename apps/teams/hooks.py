"""What the apps above teams plug into it (apps.core.hooks), from their ``AppConfig.ready()``.

- ``overview_notebooks``: the team's notebooks as its overview page shows them (a few, and
  the counts). Notebooks
  sit above teams in the layer order, so the notebooks app registers the answer; with none
  registered the overview says the team has no notebooks.
- ``period_spend``: what the team has spent this billing period. Billing sits above teams
  and registers it; with none registered (or billing off) there is no spend to show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

    from apps.teams.models import Team


@dataclass(frozen=True)
class OverviewItem:
    """One notebook on the team's overview: its name, where it lives, its status (the code
    for the badge's colour, and the words a person reads)."""

    name: str
    url: str
    status: str
    status_label: str
    # While it runs: when its machine came up, and what it has cost since (None: not charged).
    started_at: datetime | None = None
    cost: Decimal | None = None


@dataclass(frozen=True)
class Overview:
    """The team's notebooks on its overview: the first few (running ones first) and how many
    there are, and of those how many run."""

    items: list[OverviewItem]
    total: int
    running: int
    # Whether the running ones carry a cost (False where nothing is charged).
    costed: bool = False

    @property
    def running_items(self) -> list[OverviewItem]:
        return [item for item in self.items if item.started_at is not None]


def _no_notebooks(team: Team, *, limit: int) -> Overview:
    return Overview(items=[], total=0, running=0)


overview_notebooks: Hook[..., Overview] = Hook(
    "the team's notebooks on its overview", default=_no_notebooks
)


@dataclass(frozen=True)
class Spend:
    """What the team has spent in its billing period so far, and where to read more."""

    amount: Decimal
    period_start: datetime
    period_end: datetime
    url: str


def _no_spend(team: Team) -> Spend | None:
    return None


period_spend: Hook[..., Spend | None] = Hook(
    "the team's spend this billing period", default=_no_spend
)
