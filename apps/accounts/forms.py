"""Account forms: the extra signup field and the profile form."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms

from apps.accounts.models import INVOKE_SCOPE, TOKEN_AREAS, User

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


class TokenForm(forms.Form):
    """Make a personal access token: a name, a level per area, a team, an expiry."""

    LEVELS = [("", "No access"), ("read", "Read"), ("write", "Read and write")]
    EXPIRY = [
        ("7", "7 days"),
        ("30", "30 days"),
        ("90", "90 days"),
        ("365", "1 year"),
        ("", "Never"),
    ]

    name = forms.CharField(
        label="Name",
        max_length=100,
        help_text="What uses it, e.g. “laptop CLI” or “CI pipeline”.",
    )
    team = forms.ChoiceField(label="Limit to one team", required=False)
    invoke = forms.BooleanField(
        label="Call deployments",
        required=False,
        help_text=f"{INVOKE_SCOPE}: call the team's protected and private deployments' "
        "endpoints, nothing else.",
    )
    expires_in_days = forms.ChoiceField(
        label="Expires", choices=EXPIRY, initial="30", required=False
    )

    def __init__(self, *args: Any, teams: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        team_field = self.fields["team"]
        assert isinstance(team_field, forms.ChoiceField)  # noqa: S101 - declared above
        team_field.choices = [("", "All my teams"), *teams]
        for area in TOKEN_AREAS:
            self.fields[f"scope_{area}"] = forms.ChoiceField(
                label=area.capitalize(),
                choices=self.LEVELS,
                required=False,
            )

    def scope_fields(self) -> list[forms.BoundField]:
        return [self[f"scope_{area}"] for area in TOKEN_AREAS]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        scopes = [
            f"{area}:{cleaned[f'scope_{area}']}"
            for area in TOKEN_AREAS
            if cleaned.get(f"scope_{area}")
        ]
        if cleaned.get("invoke"):
            scopes.append(INVOKE_SCOPE)
        if not scopes:
            raise forms.ValidationError("Give the token access to at least one area.")
        cleaned["scopes"] = scopes
        expiry = cleaned.get("expires_in_days")
        cleaned["expires_in_days"] = int(expiry) if expiry else None
        return cleaned
