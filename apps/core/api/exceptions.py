"""One error format for the whole API:

    {"error": {"code": "permission_denied", "message": "...", "fields": {...}}}

A validation error's code is "invalid", or the code a service's 400 refusal names.

``fields`` appears for validation errors only, mapping each field to its messages; a
refusal that says where it can be lifted (a plan limit) adds ``upgrade_url``, absolute.

A service's refusal is a ``ServiceError`` (apps.core.errors) that carries its own status
and code, so this handler knows no app's error classes: it translates that family, and
Django's and DRF's own exceptions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.errors import ServiceError

if TYPE_CHECKING:
    from rest_framework.response import Response


def _api_error(exc: ServiceError) -> exceptions.APIException:
    """A service's refusal as DRF's exception, with the service's own message."""
    if exc.status_code == status.HTTP_400_BAD_REQUEST:
        # A 400 names the field to fix.
        return exceptions.ValidationError({exc.field: [str(exc)]} if exc.field else [str(exc)])
    error = exceptions.APIException(str(exc), code=exc.code)
    error.status_code = exc.status_code
    return error


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    upgrade_url = None
    # A 400 with a code of its own (a damaged chunk's "chunk_damaged") keeps it: a client
    # acts on the code, not the words.
    invalid_code = "invalid"
    if isinstance(exc, ServiceError):
        upgrade_url = exc.upgrade_url
        invalid_code = exc.code or invalid_code
        exc = _api_error(exc)
    elif isinstance(exc, Http404):
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
        body: dict[str, Any] = {"code": invalid_code, "message": message, "fields": fields}
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        body = {"code": code, "message": str(exc.detail)}
        if upgrade_url:
            body["upgrade_url"] = context["request"].build_absolute_uri(upgrade_url)
    response.data = {"error": body}
    return response
