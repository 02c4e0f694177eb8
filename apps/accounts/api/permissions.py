"""What a token may do: the area of the view, read or write by the HTTP method."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework import permissions

from apps.accounts.models import PersonalAccessToken

if TYPE_CHECKING:
    from rest_framework.request import Request


class TokenScope(permissions.BasePermission):
    """A token needs ``<view.token_area>:read`` for safe methods and ``:write`` for others.

    Session-authenticated requests (the browser) are not narrowed by scopes.
    ``token_area = None`` marks a view tokens may not use at all.
    """

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, PersonalAccessToken):
            return True
        area = getattr(view, "token_area", None)
        if area is None:
            self.message = "This endpoint cannot be used with an API token; sign in instead."
            return False
        write = request.method not in permissions.SAFE_METHODS
        if token.allows(area, write=write):
            return True
        self.message = f"This token lacks the {area}:{'write' if write else 'read'} scope."
        return False
