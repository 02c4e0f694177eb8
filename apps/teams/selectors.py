"""Reads about teams that several places share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.teams.models import Membership

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from apps.accounts.models import User


def memberships_of(user: User) -> QuerySet[Membership]:
    """The user's memberships in every team: the one read that crosses teams by design."""
    return Membership.objects.unscoped().filter(user=user).select_related("team")


def membership_in(user: User, slug: str) -> Membership | None:
    """The user's membership in the team with ``slug``, or None (outsider, or no such team)."""
    return memberships_of(user).filter(team__slug=slug).first()
