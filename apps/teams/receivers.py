"""Signal receivers: only the hook from sign-up into the teams service."""

from __future__ import annotations

from typing import Any

from allauth.account.signals import user_signed_up
from django.contrib import messages
from django.dispatch import receiver
from django.urls import reverse

from apps.accounts.adapter import AFTER_SIGNUP_KEY, SIGNUP_JOINING_KEY
from apps.teams.invitation_views import SESSION_KEY
from apps.teams.invitations import InvitationError, invitation_accept, invitation_from_token
from apps.teams.services import team_create_personal


@receiver(user_signed_up, dispatch_uid="teams.personal_team_on_signup")
def _personal_team_on_signup(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    team_create_personal(user=user)


@receiver(user_signed_up, dispatch_uid="teams.accept_invitation_on_signup")
def _accept_invitation_on_signup(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """A person who signed up from an invitation link lands in that team."""
    if request is not None:
        request.session.pop(SIGNUP_JOINING_KEY, None)
    token = request.session.pop(SESSION_KEY, None) if request is not None else None
    if not token:
        return
    try:
        invitation = invitation_from_token(token)
        membership = invitation_accept(invitation=invitation, user=user)
    except InvitationError as exc:
        messages.warning(request, str(exc))
        return
    request.session[AFTER_SIGNUP_KEY] = reverse("teams:home", args=[membership.team.slug])
    messages.success(request, f"Welcome to {membership.team.name}.")
