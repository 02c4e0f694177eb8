"""The dashboard, health probes and the error pages a person sees instead of a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from allauth.mfa.models import Authenticator
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, HttpResponseServerError, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from apps.core.dashboard import dashboard_activity
from apps.core.health import run_checks

if TYPE_CHECKING:
    from apps.accounts.models import User


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    user = cast("User", request.user)
    has_totp = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
    return render(
        request,
        "core/dashboard.html",
        {"has_totp": has_totp, "activity": dashboard_activity(user)},
    )


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving. Checks nothing else, by design."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: database, cache, broker and storage answer (503 names any that don't)."""
    checks = run_checks()
    failing = sorted(name for name, result in checks.items() if result != "ok")
    if failing:
        return JsonResponse(
            {"status": "unavailable", "failing": failing, "checks": checks},
            status=503,
        )
    return JsonResponse({"status": "ok", "checks": checks})


# The API promises one JSON error shape (apps.core.api.exceptions) everywhere under it,
# also for what Django answers before any API view runs: an unknown path, a failure.
_API_PREFIX = "/api/"


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(_API_PREFIX)


def _api_error(*, status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message}}, status=status)


def _error_page(
    request: HttpRequest,
    *,
    status: int,
    title: str,
    message: str,
    code: str = "error",
    api_message: str | None = None,
) -> HttpResponse:
    """The error page a person sees, or under /api/ the API's JSON error with ``code``."""
    if _is_api(request):
        return _api_error(status=status, code=code, message=api_message or title + ".")
    return render(
        request,
        "errors/error.html",
        {"status": status, "title": title, "message": message},
        status=status,
    )


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, RequestDataTooBig):
        return _error_page(
            request,
            status=413,
            title="That was too much to send at once",
            code="request_too_large",
            message=(
                "The form you sent is larger than Lattice accepts in one request. "
                "Shorten the text, or upload large files from the page made for them, "
                "then try again."
            ),
        )
    if isinstance(exception, TooManyFieldsSent | TooManyFilesSent):
        return _error_page(
            request,
            status=400,
            title="That form had too many fields",
            code="bad_request",
            api_message="The request had too many fields.",
            message="Reload the page and send the form again from there.",
        )
    return _error_page(
        request,
        status=400,
        title="That request could not be understood",
        code="bad_request",
        message="Something in what your browser sent was malformed. Reload the page and try again.",
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error_page(
        request,
        status=403,
        title="You can't do that here",
        code="permission_denied",
        api_message="You do not have permission to perform this action.",
        message=(
            "Your account does not have access to this page. "
            "Ask an admin of the team if you need it."
        ),
    )


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error_page(
        request,
        status=404,
        title="Page not found",
        code="not_found",
        api_message="There is nothing at this address.",
        message="There is nothing at this address, or you do not have access to it.",
    )


def too_many_requests(request: HttpRequest) -> HttpResponse:
    """allauth's rate limits (signup, reset, ...) answer with this (config.urls.handler429)."""
    return _error_page(
        request,
        status=429,
        title="Too many attempts",
        code="throttled",
        message="You have tried this too often in a short time. Wait a few minutes and try again.",
    )


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return _api_error(status=500, code="server_error", message="A server error occurred.")
    # Rendered without the request or context processors: whatever broke may break them too.
    return HttpResponseServerError(render_to_string("errors/500.html"))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return _error_page(
        request,
        status=403,
        title="This form has expired",
        code="csrf_failed",
        api_message="CSRF check failed: send the X-CSRFToken header with the session's token.",
        message=(
            "For your security, forms can only be sent from a page Lattice served recently, "
            "with cookies enabled. Go back, reload the page and send it again."
        ),
    )
