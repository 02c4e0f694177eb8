"""The dashboard's activity (apps.core.dashboard.dashboard_activity) across a person's
teams: their running notebooks (from the hook notebooks registers) and, for the
teams whose bill they may see, the spend this period (the hook billing registers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.urls import reverse

from apps.core.dashboard import Activity, RunningNotebook, TeamSpend
from apps.teams.hooks import period_spends, running_notebooks
from apps.teams.permissions import role_allows
from apps.teams.selectors import memberships_of

if TYPE_CHECKING:
    from apps.accounts.models import User

# Running notebooks listed per team; more are counted, and the team's list shows them.
PER_TEAM = 8


def activity(user: User) -> Activity:
    """Read for all the person's teams at once (one hook call each for what runs and for
    the spend), so a person in many teams costs no more queries than one in a single team."""
    memberships = list(memberships_of(user).order_by("team__name"))
    teams = [m.team for m in memberships]
    runs = running_notebooks(teams, limit=PER_TEAM)
    # The bill is for those who may see it (billing.view), as on the billing page.
    spends = period_spends([m.team for m in memberships if role_allows(m.role, "billing.view")])
    running: list[RunningNotebook] = []
    spend: list[TeamSpend] = []
    unlisted = 0
    for team in teams:
        team_url = reverse("teams:home", args=[team.slug])
        listed = runs.items.get(team.pk, [])
        unlisted += max(runs.counts.get(team.pk, 0) - len(listed), 0)
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
        team_spend = spends.get(team.pk)
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
    return Activity(running=running, unlisted=unlisted, spend=spend, costed=runs.costed)
