"""Lattice's allauth adapter: where a person goes after signing up, and what its mails call
the site."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings

if TYPE_CHECKING:
    from django.http import HttpRequest


# Where a new user goes after sign-up, when an app put it in the session (the teams app
# sends someone who signed up from an invitation to their new team).
AFTER_SIGNUP_KEY = "lattice.after_signup"
# The name of the team a sign-up joins, when an app put it in the session (the teams app,
# for a sign-up from an invitation): the sign-up page names it. A template reads it, so
# the key is a plain name.
SIGNUP_JOINING_KEY = "lattice_signup_joining"


class AccountAdapter(DefaultAccountAdapter):
    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        return request.session.pop(AFTER_SIGNUP_KEY, None) or super().get_signup_redirect_url(
            request,
        )

    def send_mail(self, template_prefix: str, email: str, context: dict[str, Any]) -> None:
        # Mails name the site as LATTICE_SITE_NAME: without the sites framework allauth's
        # ``current_site`` is the request's host and port ("Hello from 127.0.0.1:8101!").
        super().send_mail(
            template_prefix, email, {"site_name": settings.LATTICE_SITE_NAME, **context}
        )
