"""Signal receivers: only the hook from sign-up into the teams service."""

from __future__ import annotations

from typing import Any

from allauth.account.signals import user_signed_up
from django.dispatch import receiver

from apps.teams.services import team_create_personal


@receiver(user_signed_up, dispatch_uid="teams.personal_team_on_signup")
def _personal_team_on_signup(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    team_create_personal(user=user)
