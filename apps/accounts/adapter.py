"""Lattice's allauth adapter: where a person goes after signing up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from allauth.account.adapter import DefaultAccountAdapter

if TYPE_CHECKING:
    from django.http import HttpRequest


# Where a new user goes after sign-up, when an app put it in the session (the teams app
# sends someone who signed up from an invitation to their new team).
AFTER_SIGNUP_KEY = "lattice.after_signup"


class AccountAdapter(DefaultAccountAdapter):
    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        return request.session.pop(AFTER_SIGNUP_KEY, None) or super().get_signup_redirect_url(
            request,
        )
