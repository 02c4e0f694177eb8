"""Writes to teams and memberships. Each is one transaction with an audit entry.

Rules beyond the permission matrix (apps.teams.permissions):
- a team always keeps at least one owner;
- only an owner may make someone an owner, or change or remove an owner;
- a personal team cannot be left, deleted, or given more owners' seats away.

Whatever narrows someone's access (a removal, a leave, a lower role, a transfer
away, a deleted team) also calls ``apps.core.revocation.access_changed``: once
the change commits, that person's open websockets and streams check again and
close what they no longer allow (ARCHITECTURE decision 12).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.text import slugify

from apps.accounts.workload import workload_tokens_revoke
from apps.core.audit import audit_record
from apps.core.errors import ConflictError, PermissionDeniedError
from apps.core.revocation import access_changed
from apps.teams.models import Membership, Role, Team
from apps.teams.permissions import membership_of, require_permission, role_allows, role_narrows

if TYPE_CHECKING:
    from apps.accounts.models import User


class TeamError(ConflictError):
    """A change the rules refuse (409). The message is shown to the person as it is."""


class TeamPermissionError(PermissionDeniedError, TeamError):
    """The actor's role does not allow this (403)."""


def acting_membership(team: Team, actor: User, permission: str) -> Membership:
    """The actor's membership, for rules that depend on their role, once
    ``require_permission`` has let them through (TeamPermissionError, 403, if not)."""
    return require_permission(team, actor, permission, error=TeamPermissionError)


def _owner_count(team: Team) -> int:
    return Membership.objects.for_team(team).filter(role=Role.OWNER).count()


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50].strip("-") or "team"
    slug, n = base, 1
    while Team.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def _refuse_a_name_i_already_see(actor: User, name: str, *, team: Team | None = None) -> None:
    """Two of a person's teams may not share a name (case aside): the switcher, the dashboard
    and the token form would show them alike. Someone else's team may have it.

    Under the caller's transaction, the person's row is locked first: two creates or
    renames of theirs at once take turns, so the second sees the first's name."""
    get_user_model().objects.select_for_update().filter(pk=actor.pk).exists()
    mine = Membership.objects.unscoped().filter(user=actor, team__name__iexact=name)
    if team is not None:
        mine = mine.exclude(team=team)
    clash = mine.select_related("team").first()
    if clash is not None:
        raise TeamError(
            f'You are already in a team named "{clash.team.name}". '
            "Choose another name, so you can tell the two apart.",
            field="name",
            code="duplicate_team_name",
        )


@transaction.atomic
def team_create(*, actor: User, name: str, personal: bool = False) -> Team:
    """Make a team with ``actor`` as its owner; audit it."""
    name = name.strip()
    if not name:
        raise TeamError("A team needs a name.")
    _refuse_a_name_i_already_see(actor, name)
    team = Team.objects.create(
        name=name,
        slug=_unique_slug(name),
        personal=personal,
        created_by=actor,
    )
    Membership.objects.for_team(team).create(team=team, user=actor, role=Role.OWNER)
    audit_record(team=team, actor=actor, action="team.created", target=team.name)
    return team


def team_create_personal(*, user: User) -> Team:
    """The team every new user gets at sign-up."""
    return team_create(actor=user, name=f"{user.display_name}'s team", personal=True)


@transaction.atomic
def team_rename(*, team: Team, actor: User, name: str) -> Team:
    """Rename the team (its slug, and so its URLs, stay); audit it."""
    require_permission(team, actor, "team.rename", error=TeamPermissionError)
    name = name.strip()
    if not name:
        raise TeamError("A team needs a name.")
    _refuse_a_name_i_already_see(actor, name, team=team)
    old = team.name
    team.name = name
    team.save(update_fields=["name"])
    audit_record(team=team, actor=actor, action="team.renamed", target=name, old=old)
    return team


@transaction.atomic
def member_change_role(*, team: Team, actor: User, member: Membership, role: str) -> Membership:
    """Give ``member`` a new role; audit it; a lower role closes what it no longer allows."""
    actor_membership = acting_membership(team, actor, "members.change_role")
    new_role = Role(role)
    # Lock the team's memberships so two demotions cannot both pass the owner count.
    list(Membership.objects.for_team(team).select_for_update())
    member.refresh_from_db()
    if member.team_id != team.pk:
        raise TeamError("That person is not in this team.")
    touches_owner = Role.OWNER in {member.role, new_role}
    if touches_owner and actor_membership.role != Role.OWNER:
        raise TeamPermissionError("Only an owner can make someone an owner or change an owner.")
    if member.role == Role.OWNER and new_role != Role.OWNER and _owner_count(team) == 1:
        raise TeamError("A team needs an owner. Make someone else an owner first.")
    old = member.role
    member.role = new_role
    member.save(update_fields=["role"])
    if role_narrows(old, new_role):
        access_changed(user_id=member.user_id, team_id=team.pk)
    audit_record(
        team=team,
        actor=actor,
        action="member.role_changed",
        target=member.user.email,
        old=old,
        new=new_role.value,
    )
    return member


@transaction.atomic
def member_remove(*, team: Team, actor: User, member: Membership) -> None:
    """Take ``member`` out of the team (or leave, when it is the actor); audit it; their
    open connections to the team close and their workload tokens in it are revoked."""
    leaving = member.user_id == actor.pk
    actor_membership = membership_of(team, actor)
    if actor_membership is None:
        raise TeamPermissionError("You are not in this team.")
    if not leaving:
        if not role_allows(actor_membership.role, "members.remove"):
            raise TeamPermissionError("Your role in this team does not allow that.")
        if member.role == Role.OWNER and actor_membership.role != Role.OWNER:
            raise TeamPermissionError("Only an owner can remove an owner.")
    if team.personal and member.role == Role.OWNER:
        raise TeamError("This is a personal team: its owner cannot leave it.")
    list(Membership.objects.for_team(team).select_for_update())
    if member.role == Role.OWNER and _owner_count(team) == 1:
        raise TeamError("A team needs an owner. Make someone else an owner first.")
    email = member.user.email
    member.delete()
    # What their notebooks and jobs run here acts as them: from now, no more.
    workload_tokens_revoke(user=member.user_id, team=team)
    access_changed(user_id=member.user_id, team_id=team.pk)
    audit_record(
        team=team,
        actor=actor,
        action="member.left" if leaving else "member.removed",
        target=email,
    )


@transaction.atomic
def team_transfer_ownership(*, team: Team, actor: User, member: Membership) -> None:
    """Make ``member`` the owner and the actor an admin; audit it; the actor's open
    connections check their (lower) role again."""
    actor_membership = acting_membership(team, actor, "team.transfer")
    if member.team_id != team.pk or member.pk == actor_membership.pk:
        raise TeamError("Choose another member of this team.")
    member.role = Role.OWNER
    member.save(update_fields=["role"])
    actor_membership.role = Role.ADMIN
    actor_membership.save(update_fields=["role"])
    access_changed(user_id=actor.pk, team_id=team.pk)
    audit_record(
        team=team,
        actor=actor,
        action="team.ownership_transferred",
        target=member.user.email,
    )


@transaction.atomic
def team_delete(*, team: Team, actor: User, confirmation: str) -> None:
    """Delete the team and everything it owns. ``confirmation`` must be its slug. Every
    member's open connections to it close."""
    require_permission(team, actor, "team.delete", error=TeamPermissionError)
    if team.personal:
        raise TeamError("A personal team cannot be deleted.")
    if confirmation.strip() != team.slug:
        raise TeamError(f"Type the team's short name, {team.slug}, to confirm.")
    members = list(Membership.objects.for_team(team).values_list("user_id", flat=True))
    team_id = team.pk
    team.delete()
    for user_id in members:
        access_changed(user_id=user_id, team_id=team_id)
