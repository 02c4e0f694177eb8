"""How many more people a team may hold, and where it gets more: hooks (apps.core.hooks)
that the app selling seats (billing) registers from its ``AppConfig.ready()``.

``seats_free(team)`` is the seats still free, or None for no limit (the default: nothing
sells seats). Invitations are checked when sent and again when accepted.
``seats_upgrade_url(team)`` is where a team that ran out gets more, shown with the refusal
(None: nowhere to say).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from apps.teams.models import Team


def _unlimited(team: Team) -> int | None:
    return None


def _nowhere(team: Team) -> str | None:
    return None


seats_free: Hook[[Team], int | None] = Hook("seats a team may still fill", default=_unlimited)
seats_upgrade_url: Hook[[Team], str | None] = Hook("where a team gets more seats", default=_nowhere)
