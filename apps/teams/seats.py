"""How many more people a team may hold. The billing issue plugs its plans in here.

``LATTICE_SEAT_POLICY`` names a function ``(team) -> int | None``: the seats
still free, or None for no limit. Invitations are checked when sent and again
when accepted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from apps.teams.models import Team


def unlimited(team: Team) -> int | None:
    return None


def seats_free(team: Team) -> int | None:
    policy = import_string(getattr(settings, "LATTICE_SEAT_POLICY", "apps.teams.seats.unlimited"))
    return policy(team)
