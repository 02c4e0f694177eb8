"""One error format for the whole API:

    {"error": {"code": "permission_denied", "message": "...", "fields": {...}}}

``fields`` appears for validation errors only, mapping each field to its messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

from apps.billing.entitlements import billing_url
from apps.core.errors import ServiceError
from apps.teams.invitations import InvitationError
from apps.teams.services import TeamError, TeamPermissionError

if TYPE_CHECKING:
    from rest_framework.response import Response

_INVITATION_STATUS = {
    "invalid": status.HTTP_404_NOT_FOUND,
    "expired": status.HTTP_410_GONE,
    "revoked": status.HTTP_410_GONE,
    "used": status.HTTP_410_GONE,
    "wrong_account": status.HTTP_403_FORBIDDEN,
    "seats": status.HTTP_402_PAYMENT_REQUIRED,
}


class PlanLimit(exceptions.APIException):
    """402: the team's plan or spend cap refuses; the body adds where to upgrade."""

    status_code = status.HTTP_402_PAYMENT_REQUIRED

    def __init__(self, detail: str, *, code: str, upgrade_url: str) -> None:
        super().__init__(detail, code=code)
        self.upgrade_url = upgrade_url


def _domain_error(exc: Exception) -> exceptions.APIException | None:  # noqa: PLR0911 - a branch per kind
    """Turn a service's refusal into an API error with the service's own message."""
    if isinstance(exc, TeamPermissionError):
        return exceptions.PermissionDenied(str(exc))
    if isinstance(exc, InvitationError):
        error = exceptions.APIException(str(exc), code=exc.code)
        error.status_code = _INVITATION_STATUS.get(exc.code, status.HTTP_409_CONFLICT)
        return error
    if isinstance(exc, TeamError):
        error = exceptions.APIException(str(exc), code="conflict")
        error.status_code = status.HTTP_409_CONFLICT
        return error
    from apps.billing.entitlements import PlanLimitError

    if isinstance(exc, PlanLimitError):
        return PlanLimit(str(exc), code=exc.code, upgrade_url=exc.upgrade_url)
    if isinstance(exc, ServiceError):
        # Its status and code come with it; a 400 names the field to fix.
        if exc.status_code == status.HTTP_400_BAD_REQUEST:
            return exceptions.ValidationError({exc.field: [str(exc)]} if exc.field else [str(exc)])
        error = exceptions.APIException(str(exc), code=exc.code)
        error.status_code = exc.status_code
        return error
    return None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    team_slug = (context.get("kwargs") or {}).get("team_slug")
    if isinstance(exc, InvitationError) and exc.code == "seats" and team_slug:
        # The plan's seats: a 402 that says where to upgrade, like the plan's other limits.
        exc = PlanLimit(
            str(exc),
            code="seats",
            upgrade_url=billing_url(team_slug),
        )
    exc = _domain_error(exc) or exc
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    assert isinstance(exc, exceptions.APIException)  # noqa: S101 - DRF answered, so it is one
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        message = "Some fields are not valid."
        if set(fields) == {"non_field_errors"}:
            message = " ".join(str(m) for m in fields["non_field_errors"])
        body: dict[str, Any] = {"code": "invalid", "message": message, "fields": fields}
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        body = {"code": code, "message": str(exc.detail)}
        if isinstance(exc, PlanLimit):
            body["upgrade_url"] = context["request"].build_absolute_uri(exc.upgrade_url)
    response.data = {"error": body}
    return response
