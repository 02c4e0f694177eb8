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

from apps.core.health import run_checks

if TYPE_CHECKING:
    from apps.accounts.models import User


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    user = cast("User", request.user)
    has_totp = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
    return render(request, "core/dashboard.html", {"has_totp": has_totp})


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


def _error_page(
    request: HttpRequest,
    *,
    status: int,
    title: str,
    message: str,
) -> HttpResponse:
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
            message="Reload the page and send the form again from there.",
        )
    return _error_page(
        request,
        status=400,
        title="That request could not be understood",
        message="Something in what your browser sent was malformed. Reload the page and try again.",
    )


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error_page(
        request,
        status=403,
        title="You can't do that here",
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
        message="There is nothing at this address, or you do not have access to it.",
    )


def too_many_requests(request: HttpRequest) -> HttpResponse:
    """allauth's rate limits (signup, reset, ...) answer with this (config.urls.handler429)."""
    return _error_page(
        request,
        status=429,
        title="Too many attempts",
        message="You have tried this too often in a short time. Wait a few minutes and try again.",
    )


def server_error(request: HttpRequest) -> HttpResponse:
    # Rendered without the request or context processors: whatever broke may break them too.
    return HttpResponseServerError(render_to_string("errors/500.html"))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return _error_page(
        request,
        status=403,
        title="This form has expired",
        message=(
            "For your security, forms can only be sent from a page Lattice served recently, "
            "with cookies enabled. Go back, reload the page and send it again."
        ),
    )
