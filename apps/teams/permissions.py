"""Who may do what in a team: the permission matrix, in one place.

| permission            | owner | admin | member | viewer |
| --------------------- | :---: | :---: | :----: | :----: |
| team.view             |   x   |   x   |   x    |   x    |
| members.view          |   x   |   x   |   x    |   x    |
| notebooks.view        |   x   |   x   |   x    |   x    |
| notebooks.manage      |   x   |   x   |   x    |        |
| notebooks.open        |   x   |   x   |   x    |        |
| notebooks.settings    |   x   |   x   |        |        |
| datasets.view         |   x   |   x   |   x    |   x    |
| datasets.manage       |   x   |   x   |   x    |        |
| models.view           |   x   |   x   |   x    |   x    |
| models.manage         |   x   |   x   |   x    |        |
| deployments.view      |   x   |   x   |   x    |   x    |
| deployments.manage    |   x   |   x   |   x    |        |
| deployments.invoke    |   x   |   x   |   x    |   x    |
| members.invite        |   x   |   x   |        |        |
| members.change_role   |   x   |   x   |        |        |
| members.remove        |   x   |   x   |        |        |
| team.rename           |   x   |   x   |        |        |
| secrets.view          |   x   |   x   |   x    |        |
| secrets.manage        |   x   |   x   |        |        |
| audit.view            |   x   |   x   |        |        |
| billing.view          |   x   |   x   |        |        |
| billing.manage        |   x   |   x   |        |        |
| team.transfer         |   x   |       |        |        |
| team.delete           |   x   |       |        |        |

Admins are the team's billing admins too. Admins manage members, but only an
owner may make someone an owner, or change or remove an owner (apps.teams.services
enforces those rules). docs/permissions.md shows the same table; tests/teams/test_roles.py
checks every cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core.errors import PermissionDeniedError
from apps.teams.models import Membership, Role

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team

_EVERYONE = frozenset(Role)
_MEMBERS = frozenset({Role.OWNER, Role.ADMIN, Role.MEMBER})
_ADMINS = frozenset({Role.OWNER, Role.ADMIN})
_OWNERS = frozenset({Role.OWNER})

PERMISSIONS: dict[str, frozenset[Role]] = {
    "team.view": _EVERYONE,
    "members.view": _EVERYONE,
    "notebooks.view": _EVERYONE,
    "notebooks.manage": _MEMBERS,
    "notebooks.open": _MEMBERS,
    "notebooks.settings": _ADMINS,
    "datasets.view": _EVERYONE,
    "datasets.manage": _MEMBERS,
    "models.view": _EVERYONE,
    "models.manage": _MEMBERS,
    "deployments.view": _EVERYONE,
    "deployments.manage": _MEMBERS,
    # Calling a private deployment's endpoint: it runs what members deployed, nothing more.
    "deployments.invoke": _EVERYONE,
    "members.invite": _ADMINS,
    "members.change_role": _ADMINS,
    "members.remove": _ADMINS,
    "team.rename": _ADMINS,
    # Names only (no value is ever shown); members name secrets in what they run.
    "secrets.view": _MEMBERS,
    "secrets.manage": _ADMINS,
    "audit.view": _ADMINS,
    "billing.view": _ADMINS,
    "billing.manage": _ADMINS,
    "team.transfer": _OWNERS,
    "team.delete": _OWNERS,
}


def role_allows(role: str, permission: str) -> bool:
    """True when ``role`` grants ``permission``. An unknown permission is a bug: it raises."""
    return Role(role) in PERMISSIONS[permission]


def role_narrows(old: str, new: str) -> bool:
    """True when ``new`` lacks a permission ``old`` grants: what was open may have to close."""
    return any(Role(old) in roles and Role(new) not in roles for roles in PERMISSIONS.values())


def membership_of(team: Team, user: User) -> Membership | None:
    """``user``'s membership of ``team``, or None."""
    return Membership.objects.for_team(team).filter(user=user).first()


def member_may(team: Team, user: User, permission: str) -> bool:
    """True when ``user`` is in ``team`` with a role that grants ``permission``."""
    membership = membership_of(team, user)
    return membership is not None and role_allows(membership.role, permission)


def require_permission(
    team: Team,
    actor: User,
    permission: str,
    *,
    error: type[PermissionDeniedError] = PermissionDeniedError,
    message: str = "Your role in this team does not allow that.",
) -> Membership:
    """Refuse (403, ``error``) an actor whose role in ``team`` lacks ``permission``: the one
    role guard every service calls before it writes. Returns the actor's membership, for the
    rules that depend on their role (read once)."""
    membership = membership_of(team, actor)
    if membership is None or not role_allows(membership.role, permission):
        raise error(message)
    return membership
