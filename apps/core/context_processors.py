"""What every page's template may read about the site (apps.teams.context_processors adds
the visitor's teams)."""

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
    return {"site_name": settings.LATTICE_SITE_NAME, "nav_section": nav_section}
