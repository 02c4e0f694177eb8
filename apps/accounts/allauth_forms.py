"""Forms that replace allauth's own (ACCOUNT_FORMS).

Kept apart from apps.accounts.forms: allauth's forms module imports that one
(ACCOUNT_SIGNUP_FORM_CLASS), so it cannot import allauth's forms back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from allauth.account import forms as allauth_forms
from allauth.account.models import EmailAddress

from apps.accounts.models import User

if TYPE_CHECKING:
    from django.http import HttpRequest


class ResetPasswordForm(allauth_forms.ResetPasswordForm):
    """A reset link goes only to an address its account has verified.

    Anyone who can add an address to an account (an old session, before
    reauthentication was asked for) must not be able to reset its password
    through that address. An unverified address gets no mail at all; the reply
    is the same as for any other address, so it tells nobody what exists.
    """

    users: list[User]

    def clean_email(self) -> str:
        email = super().clean_email()
        verified = set(
            EmailAddress.objects.filter(email__iexact=email, verified=True).values_list(
                "user_id", flat=True
            )
        )
        self.users = [user for user in self.users if user.pk in verified]
        return email

    def save(self, request: HttpRequest, **kwargs: Any) -> str:
        email = self.cleaned_data["email"]
        if not self.users and _on_an_account(email):
            # Unverified: no link, and no "no account here" mail either (that would be false).
            return email
        return super().save(request, **kwargs)


def _on_an_account(email: str) -> bool:
    return (
        EmailAddress.objects.filter(email__iexact=email).exists()
        or User.objects.filter(email__iexact=email).exists()
    )
