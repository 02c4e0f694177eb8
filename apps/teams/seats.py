"""How many more people a team may hold. The billing issue plugs its plans in here.

``LATTICE_SEAT_POLICY`` names a function ``(team) -> int | None``: the seats
still free, or None for no limit. Invitations are checked when sent and again
when accepted. ``seats_upgrade_url`` is a hook (apps.core.hooks) that the app
selling seats registers from its ``AppConfig.ready()``: where a team that ran out
gets more, shown with the refusal (None: nowhere to say).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.module_loading import import_string

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from apps.teams.models import Team


def unlimited(team: Team) -> int | None:
    return None


def seats_free(team: Team) -> int | None:
    policy = import_string(getattr(settings, "LATTICE_SEAT_POLICY", "apps.teams.seats.unlimited"))
    return policy(team)


def _nowhere(team: Team) -> str | None:
    return None


seats_upgrade_url: Hook[[Team], str | None] = Hook("where a team gets more seats", default=_nowhere)
