"""The API's side of asking again: the proof comes in the request's own fields."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from apps.accounts import reauthentication
from apps.accounts.models import PersonalAccessToken

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rest_framework.request import Request

    from apps.accounts.models import User


def require_reauthentication(request: Request, data: Mapping[str, Any]) -> None:
    """Pass if ``data`` (validated by a ReauthenticationSerializer) or the session proves
    the person is there; raise ``ReauthenticationRequiredError`` (403) or a 400 on the field."""
    reauthentication.require_reauthentication(
        request._request,  # Django's request: allauth reads its session and user
        user=cast("User", request.user),
        by_token=isinstance(request.auth, PersonalAccessToken),
        password=data.get("password", ""),
        code=data.get("code", ""),
    )
