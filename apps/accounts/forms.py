"""Account forms: the extra signup field and the profile form."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms

from apps.accounts.models import User

if TYPE_CHECKING:
    from django.http import HttpRequest


class SignupForm(forms.Form):
    """Fields allauth's signup form adds to email and password (ACCOUNT_SIGNUP_FORM_CLASS)."""

    name = forms.CharField(
        label="Full name",
        max_length=150,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "name", "placeholder": "Ada Lovelace"}),
    )

    def signup(self, request: HttpRequest, user: User) -> None:
        user.name = self.cleaned_data["name"].strip()
        user.save(update_fields=["name"])


class ProfileForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ["name"]
        widgets = {"name": forms.TextInput(attrs={"autocomplete": "name"})}

    def clean_name(self) -> str:
        return self.cleaned_data["name"].strip()
