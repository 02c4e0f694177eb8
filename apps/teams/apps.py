from __future__ import annotations

from django.apps import AppConfig


class TeamsConfig(AppConfig):
    name = "apps.teams"
    label = "teams"
    verbose_name = "Teams"

    def ready(self) -> None:
        from apps.accounts.hooks import user_teams
        from apps.core.dashboard import dashboard_activity
        from apps.teams import (
            dashboard,
            receivers,  # noqa: F401 - connects signal receivers
        )
        from apps.teams.selectors import teams_of

        user_teams.register(teams_of)
        # The dashboard shows what runs in the person's teams, and their spend.
        dashboard_activity.register(dashboard.activity)
