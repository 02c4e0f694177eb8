"""What a page does with a service's refusal, in one place.

A page action calls one service and redirects. A refusal (any ``ServiceError``,
apps.core.errors) is shown on the next page as an error message in the service's own
words; one with an ``upgrade_url`` (a plan limit) is tagged "upgrade", and
templates/partials/messages.html adds the link to the team's plans. A page that keeps
its form instead puts the refusal next to the field it names. Either way the view
catches no app's error classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect

from apps.core.errors import ServiceError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from django import forms
    from django.http import HttpRequest


def first_error(errors: Mapping[str, Iterable[object]], default: str = "") -> str:
    """The first message of a form's ``errors``, for a page that shows one line."""
    return next((str(message) for messages in errors.values() for message in messages), default)


def show_refusal(request: HttpRequest, refusal: ServiceError) -> None:
    """Show ``refusal`` as an error message on the next page, with its upgrade link."""
    messages.error(request, str(refusal), extra_tags="upgrade" if refusal.upgrade_url else "")


def page_action(
    request: HttpRequest,
    action: Callable[[], str | HttpResponse],
    *,
    back: str,
    then: str = "",
) -> HttpResponse:
    """Run ``action``, one service call, and redirect: POST, then a page that says what
    happened.

    ``action`` returns the success message (shown, then on to ``then`` if given, else
    ``back``) or a response of its own (returned as it is). A refusal is shown and the
    person goes ``back``. ``back`` and ``then`` are URLs or URL names without arguments.
    """
    try:
        outcome = action()
    except ServiceError as refusal:
        show_refusal(request, refusal)
        return redirect(back)
    if isinstance(outcome, HttpResponse):
        return outcome
    messages.success(request, outcome)
    return redirect(then or back)


def refusal_on_form(request: HttpRequest, form: forms.Form, refusal: ServiceError) -> int:
    """Put ``refusal`` on ``form``, next to the field it names when the form has that
    field, else above the form; one with an upgrade link is also a message (whose
    template links the plans). Returns the status for the page that shows the form."""
    if refusal.upgrade_url:
        show_refusal(request, refusal)
    form.add_error(refusal.field if refusal.field in form.fields else None, str(refusal))
    return refusal.status_code
