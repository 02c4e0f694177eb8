"""What the apps above teams plug into it (apps.core.hooks), from their ``AppConfig.ready()``.

- ``overview_notebooks``: the team's notebooks as its overview page shows them (a few, and
  the counts). Notebooks
  sit above teams in the layer order, so the notebooks app registers the answer; with none
  registered the overview says the team has no notebooks.
- ``running_notebooks``: the notebooks running in several teams at once (the dashboard's
  list across a person's teams), read in one go however many teams. Notebooks registers it.
- ``period_spend`` / ``period_spends``: what a team (or each of several teams, in a few
  queries whatever their number) has spent this billing period. Billing sits above teams
  and registers them; with none registered (or billing off) there is no spend to show.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from collections.abc import Sequence
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
class Running:
    """The notebooks running in several teams: the first few of each team (by team id), how
    many run in each, and whether they carry a cost (False where nothing is charged)."""

    items: dict[int, list[OverviewItem]]
    counts: dict[int, int]
    costed: bool = False


def _none_running(teams: Sequence[Team], *, limit: int) -> Running:
    return Running(items={}, counts={})


running_notebooks: Hook[..., Running] = Hook(
    "the notebooks running in several teams", default=_none_running
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


def _no_spends(teams: Sequence[Team]) -> dict[int, Spend]:
    return {}


# Each team's spend this period, by team id (teams without one are left out).
period_spends: Hook[..., dict[int, Spend]] = Hook(
    "several teams' spend this billing period", default=_no_spends
)
