"""Writing the audit log, and reading it in words. Services call ``audit_record`` inside
their transaction; pages and the API describe each entry with ``audit_describe``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.core.hooks import HookTable
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


# What each action code says in words, registered by the app that records it from its
# ``AppConfig.ready()`` (apps.core.hooks): a sentence with ``{actor}`` (who did it),
# ``{target}`` (what it was done to) and any of the entry's data, by name.
audit_phrases: HookTable[str, str] = HookTable("audit log phrases")

# Who did it, where no person did (a webhook, the billing sweep).
_NOBODY = "Lattice"


def audit_code_words(action: str) -> str:
    """An action code a person can read, for codes without a phrase:
    "invitation.revoked" reads "Invitation revoked"."""
    words = action.replace(".", " ").replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def audit_describe(entry: AuditEntry) -> str:
    """The entry in words a person uses: "Ana Lopez withdrew the invitation for
    bob@example.com", not "invitation.revoked"."""
    actor = entry.actor
    who = getattr(actor, "display_name", "") if actor is not None else ""
    who = who or entry.actor_email or _NOBODY
    data = entry.data if isinstance(entry.data, dict) else {}
    values = {**data, "actor": who, "target": entry.target}
    phrase = audit_phrases.get(entry.action)
    if phrase is not None:
        try:
            return phrase.format_map(values)
        except (KeyError, IndexError, ValueError):
            pass  # an older entry without a detail the phrase names: say it plainly
    words = audit_code_words(entry.action)
    target = f": {entry.target}" if entry.target else ""
    return f"{words}{target} (by {who})"
