"""The one fact about htmx requests the views need."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.http import HttpRequest


def is_htmx(request: HttpRequest) -> bool:
    """True when htmx made the request and expects a fragment, not a whole page."""
    return request.headers.get("HX-Request") == "true"
