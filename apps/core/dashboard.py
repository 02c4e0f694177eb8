"""What the dashboard shows of a person's work in their teams: the notebooks running now,
with their uptime and cost so far, and each team's spend this period.

Teams, notebooks and billing sit above core, so core declares the hook (apps.core.hooks)
and teams registers the answer from its ``AppConfig.ready()``; with none registered the
dashboard shows nothing running.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

    from django.contrib.auth.models import AbstractBaseUser


@dataclass(frozen=True)
class RunningNotebook:
    """A notebook running now: when its machine came up, what it has cost since (None:
    nothing is charged here)."""

    name: str
    url: str
    team_name: str
    team_url: str
    started_at: datetime
    cost: Decimal | None


@dataclass(frozen=True)
class TeamSpend:
    """What a team has spent this billing period (shown to those who may see its bill)."""

    team_name: str
    amount: Decimal
    period_start: datetime
    period_end: datetime
    url: str


@dataclass(frozen=True)
class Activity:
    running: list[RunningNotebook] = field(default_factory=list)
    # Running notebooks not listed (the dashboard lists a few per team).
    unlisted: int = 0
    spend: list[TeamSpend] = field(default_factory=list)
    # Whether running notebooks carry a cost (False where nothing is charged).
    costed: bool = False


def _nothing(user: AbstractBaseUser) -> Activity:
    return Activity()


dashboard_activity: Hook[..., Activity] = Hook("the dashboard's activity", default=_nothing)
