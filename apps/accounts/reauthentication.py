"""Sensitive account actions ask again: allauth's reauthentication, for pages and the API.

What asks: adding (or removing) an email address, making an API token, making
someone an admin or owner (a role change or an invitation), transferring a team
and deleting one. A session that is old, or stolen, or driven by a script must
not be enough for those.

Pages use allauth's machinery unchanged. ``reauthentication_required`` (allauth's
decorator, re-exported here) raises allauth's ``ReauthenticationRequired``; its
middleware sends the person to its reauthenticate page (password, or a code from
their authenticator app when two-factor is on) and replays the request after.
``ACCOUNT_REAUTHENTICATION_REQUIRED`` turns the same on for allauth's email page.

The API cannot show a form, so a sensitive API request carries its proof:
``password`` or ``code`` (a TOTP or recovery code) beside its other fields,
checked by allauth's own forms, which rate-limit failures and accept a TOTP
code once only. A browser session that reauthenticated within
``ACCOUNT_REAUTHENTICATION_TIMEOUT`` needs no proof; a token always does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from allauth.account.decorators import reauthentication_required
from allauth.account.forms import ReauthenticateForm
from allauth.account.internal.flows.reauthentication import did_recently_reauthenticate
from allauth.core import ratelimit
from allauth.mfa.base.forms import ReauthenticateForm as CodeReauthenticateForm
from allauth.mfa.utils import is_mfa_enabled

from apps.core.errors import ServiceError
from apps.core.pages import first_error

if TYPE_CHECKING:
    from django.http import HttpRequest

    from apps.accounts.models import User

__all__ = [
    "ReauthenticationError",
    "ReauthenticationRequiredError",
    "reauthentication_required",
    "require_reauthentication",
]

# The roles whose grant asks again: they can change roles, invite, and bill.
SENSITIVE_ROLES = frozenset({"owner", "admin"})


class ReauthenticationError(ServiceError):
    """The proof sent was wrong (400, on its field)."""


class ReauthenticationRequiredError(ReauthenticationError):
    """No proof was sent, and the session has none recent."""

    status_code = 403
    code = "reauthentication_required"

    def __init__(self) -> None:
        super().__init__(
            "This change needs you to confirm it is you: send your password as "
            '"password" with the request, or, with two-factor authentication on, a code '
            'from your authenticator app as "code".'
        )


class ReauthenticationThrottledError(ReauthenticationError):
    status_code = 429
    code = "throttled"


def require_reauthentication(
    request: HttpRequest,
    *,
    user: User,
    by_token: bool,
    password: str = "",
    code: str = "",
) -> None:
    """Pass if ``request`` proves it is ``user``'s; raise a ServiceError otherwise.

    Proof is the password or a two-factor code sent with the request, or (for a
    browser session, never a token) a reauthentication within the timeout.
    ``request`` is Django's request, with ``user`` already set on it.
    """
    if not password and not code:
        if not by_token and did_recently_reauthenticate(request):
            return
        raise ReauthenticationRequiredError
    # The budget allauth's reauthenticate page has, whichever way the proof comes.
    if not ratelimit.consume(request, action="reauthenticate", user=user):
        raise ReauthenticationThrottledError(
            "Too many attempts to confirm it is you. Wait a minute, then try again."
        )
    if password:
        form = ReauthenticateForm(data={"password": password}, user=user)
        if not form.is_valid():
            raise ReauthenticationError(first_error(form.errors), field="password")
        return
    if not is_mfa_enabled(user):
        raise ReauthenticationError(
            'Two-factor authentication is off for this account: send your "password" instead.',
            field="code",
        )
    code_form = CodeReauthenticateForm(data={"code": code}, user=user)
    if not code_form.is_valid():
        raise ReauthenticationError(first_error(code_form.errors), field="code")
    code_form.authenticator.record_usage()
