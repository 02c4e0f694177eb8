"""What every page's template may read about the visitor's teams (the team switcher and
the dashboard list them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.teams.selectors import memberships_of

if TYPE_CHECKING:
    from django.http import HttpRequest


def memberships(request: HttpRequest) -> dict[str, Any]:
    """``my_memberships``: the signed-in person's memberships, by team name."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    # Lazy: evaluated only by pages that draw the team switcher.
    return {"my_memberships": memberships_of(user).order_by("team__name")}
