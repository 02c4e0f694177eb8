"""Writing the audit log. Services call ``audit_record`` inside their transaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.core.models import AuditEntry

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team


def audit_record(
    *,
    team: Team,
    actor: User | None,
    action: str,
    target: str = "",
    **data: Any,
) -> AuditEntry:
    """Write one audit entry for ``team``. No other side effects."""
    return AuditEntry.objects.for_team(team).create(
        team=team,
        actor=actor,
        actor_email=actor.email if actor else "",
        action=action,
        # Targets are names and addresses; the column bounds them, not the caller.
        target=target[: AuditEntry._meta.get_field("target").max_length or 255],
        data=data,
    )
