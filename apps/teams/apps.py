from __future__ import annotations

from django.apps import AppConfig

# The audit log's words for what teams record (apps.core.audit.audit_describe).
AUDIT_PHRASES = {
    "team.created": "{actor} created the team {target}",
    "team.renamed": "{actor} renamed the team from {old} to {target}",
    "team.ownership_transferred": "{actor} made {target} the team's owner",
    "member.role_changed": "{actor} changed the role of {target} from {old} to {new}",
    "member.left": "{actor} left the team",
    "member.removed": "{actor} removed {target} from the team",
    "invitation.created": "{actor} invited {target} as {role}",
    "invitation.resent": "{actor} sent the invitation for {target} again",
    "invitation.revoked": "{actor} withdrew the invitation for {target}",
    "invitation.accepted": "{actor} accepted the invitation for {target} and joined as {role}",
    "invitation.declined": "{actor} declined the invitation for {target}",
    "secret.created": "{actor} added the secret {target}",
    "secret.updated": "{actor} changed the secret {target}",
    "secret.deleted": "{actor} deleted the secret {target}",
    "secret.used": "{target} used the secrets {names}",
}


class TeamsConfig(AppConfig):
    name = "apps.teams"
    label = "teams"
    verbose_name = "Teams"

    def ready(self) -> None:
        from django.urls import reverse

        from apps.accounts.hooks import example_urls, user_teams
        from apps.core.audit import audit_phrases
        from apps.core.dashboard import dashboard_activity
        from apps.teams import (
            dashboard,
            receivers,  # noqa: F401 - connects signal receivers
        )
        from apps.teams.selectors import teams_of

        user_teams.register(teams_of)
        # A new token of the teams area is shown a curl of the teams it may list.
        example_urls.register("teams", lambda _team: reverse("api:teams"))
        # The dashboard shows what runs in the person's teams, and their spend.
        dashboard_activity.register(dashboard.activity)
        # The audit log says what this app records in words.
        for action, phrase in AUDIT_PHRASES.items():
            audit_phrases.register(action, phrase)
