"""What every page's template may read about the visitor's teams (the team switcher and
the dashboard list them)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from django.utils.functional import SimpleLazyObject

from apps.teams.selectors import memberships_of

if TYPE_CHECKING:
    from django.http import HttpRequest


def memberships(request: HttpRequest) -> dict[str, Any]:
    """``my_memberships``: the signed-in person's memberships, by team name;
    ``my_clashing_team_names``: the names two or more of their teams share (someone else's
    team they joined may have the name of one of theirs), shown with the slug beside them."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Lazy: evaluated only by pages that draw the team switcher.
    mine = memberships_of(user).order_by("team__name")

    def clashing() -> set[str]:
        # From the memberships the switcher lists (one query for both), grouped as team names
        # are refused: ignoring case.
        names = [membership.team.name for membership in mine]
        counts = Counter(name.casefold() for name in names)
        return {name for name in names if counts[name.casefold()] > 1}

    return {"my_memberships": mine, "my_clashing_team_names": SimpleLazyObject(clashing)}
