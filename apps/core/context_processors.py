from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    from django.http import HttpRequest

_SETTINGS_PREFIXES = ("/settings/", "/accounts/")


def site(request: HttpRequest) -> dict[str, Any]:
    """The site name, and which part of the main navigation the page belongs to."""
    nav_section = ""
    if request.path == "/":
        nav_section = "dashboard"
    elif request.path.startswith(_SETTINGS_PREFIXES):
        nav_section = "settings"
    context: dict[str, Any] = {"site_name": settings.LATTICE_SITE_NAME, "nav_section": nav_section}
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        from apps.teams.selectors import memberships_of

        # Lazy: evaluated only by pages that draw the team switcher.
        context["my_memberships"] = memberships_of(user).order_by("team__name")
    return context
