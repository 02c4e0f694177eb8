"""The dashboard's activity (apps.core.dashboard.dashboard_activity) across a person's
teams: their running notebooks (from the overview hook notebooks registers) and, for the
teams whose bill they may see, the spend this period (the hook billing registers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.urls import reverse

from apps.core.dashboard import Activity, RunningNotebook, TeamSpend
from apps.teams.hooks import overview_notebooks, period_spend
from apps.teams.permissions import role_allows
from apps.teams.selectors import memberships_of

if TYPE_CHECKING:
    from apps.accounts.models import User

# Running notebooks listed per team; more are counted, and the team's list shows them.
PER_TEAM = 8


def activity(user: User) -> Activity:
    running: list[RunningNotebook] = []
    spend: list[TeamSpend] = []
    unlisted = 0
    costed = False
    for membership in memberships_of(user).order_by("team__name"):
        team = membership.team
        team_url = reverse("teams:home", args=[team.slug])
        overview = overview_notebooks(team, limit=PER_TEAM)
        listed = overview.running_items
        costed = costed or overview.costed
        unlisted += max(overview.running - len(listed), 0)
        running.extend(
            RunningNotebook(
                name=item.name,
                url=item.url,
                team_name=team.name,
                team_url=team_url,
                started_at=item.started_at,
                cost=item.cost,
            )
            for item in listed
            if item.started_at is not None
        )
        if role_allows(membership.role, "billing.view"):
            team_spend = period_spend(team)
            if team_spend is not None:
                spend.append(
                    TeamSpend(
                        team_name=team.name,
                        amount=team_spend.amount,
                        period_start=team_spend.period_start,
                        period_end=team_spend.period_end,
                        url=team_spend.url,
                    )
                )
    return Activity(running=running, unlisted=unlisted, spend=spend, costed=costed)
