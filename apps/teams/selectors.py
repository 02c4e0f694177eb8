"""Reads about teams that several places share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.teams.models import Membership, Role
from apps.teams.permissions import PERMISSIONS

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from apps.accounts.models import User
    from apps.teams.models import Team


def memberships_of(user: User) -> QuerySet[Membership]:
    """The user's memberships in every team: the one read that crosses teams by design."""
    return Membership.objects.unscoped().filter(user=user).select_related("team")


def teams_of(user: User) -> list[Team]:
    """Every team the user is in, by name (apps.accounts.hooks.user_teams)."""
    return [m.team for m in memberships_of(user).order_by("team__name")]


def membership_in(user: User, slug: str) -> Membership | None:
    """The user's membership in the team with ``slug``, or None (outsider, no such team, or
    an account deactivated since ``user`` was loaded: long-lived connections ask again)."""
    return memberships_of(user).filter(team__slug=slug, user__is_active=True).first()


def role_in(*, user_id: int, team_id: int) -> str | None:
    """The role of an active user in the team, or None: one indexed read, cheap enough for
    long-lived responses to ask again and again."""
    return (
        Membership.objects.for_team(team_id)
        .filter(user_id=user_id, user__is_active=True)
        .values_list("role", flat=True)
        .first()
    )


def roles_of(pairs: set[tuple[int, int]]) -> dict[tuple[int, int], str]:
    """The roles of active users in teams, by (user id, team id), for many pairs in one
    query (long-lived sockets of a whole process asking again); a pair missing is no
    member. May return more pairs than asked (the query crosses the ids)."""
    if not pairs:
        return {}
    users = {user_id for user_id, _ in pairs}
    teams = {team_id for _, team_id in pairs}
    rows = (
        Membership.objects.unscoped()
        .filter(user_id__in=users, team_id__in=teams, user__is_active=True)
        .values_list("user_id", "team_id", "role")
    )
    return {(user_id, team_id): role for user_id, team_id, role in rows}


def member_count(team: Team) -> int:
    """How many members the team has (what its seats hold)."""
    return Membership.objects.for_team(team).count()


def first_owner(team: Team | int) -> User | None:
    """The team's longest-standing owner: who speaks for the team where the member who
    asked for something has left it (a job's schedule outliving its author)."""
    membership = (
        Membership.objects.for_team(team)
        .filter(role=Role.OWNER)
        .select_related("user")
        .order_by("pk")
        .first()
    )
    return None if membership is None else membership.user


def member_emails_with(team: Team, permission: str) -> list[str]:
    """The email addresses of the team's members whose role grants ``permission``, sorted:
    whom to write to about what that permission looks after (e.g. billing.view)."""
    return sorted(
        Membership.objects.for_team(team)
        .filter(role__in=PERMISSIONS[permission])
        .values_list("user__email", flat=True)
    )
