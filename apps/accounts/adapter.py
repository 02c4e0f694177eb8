"""Lattice's allauth adapter: where a person goes after signing up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from allauth.account.adapter import DefaultAccountAdapter

if TYPE_CHECKING:
    from django.http import HttpRequest


class AccountAdapter(DefaultAccountAdapter):
    def get_signup_redirect_url(self, request: HttpRequest) -> str:
        from apps.teams.receivers import AFTER_SIGNUP_KEY

        return request.session.pop(AFTER_SIGNUP_KEY, None) or super().get_signup_redirect_url(
            request,
        )
