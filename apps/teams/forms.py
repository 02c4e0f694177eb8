from __future__ import annotations

from typing import TYPE_CHECKING

from django import forms

from apps.teams.models import Role
from apps.teams.secrets import secret_names

if TYPE_CHECKING:
    from apps.teams.models import Team


class TeamNameForm(forms.Form):
    name = forms.CharField(label="Team name", max_length=80)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("A team needs a name.")
        return name


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class DeleteTeamForm(forms.Form):
    confirmation = forms.CharField(label="Type the team's short name to confirm", max_length=60)


class MemberChoiceForm(forms.Form):
    member_id = forms.IntegerField(min_value=1)


class InviteForm(forms.Form):
    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class SecretForm(forms.Form):
    """A team secret to set: write-only, the value is never shown again (not even on a
    page that refuses it: the view blanks it)."""

    name = forms.CharField(
        label="Name",
        max_length=64,
        help_text="The environment variable's name, e.g. <code>HF_TOKEN</code>. Setting a name "
        "that exists replaces its value.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    value = forms.CharField(
        label="Value",
        strip=False,
        widget=forms.Textarea(
            attrs={"rows": 3, "autocomplete": "off", "spellcheck": "false"},
        ),
        help_text="Stored encrypted; nobody can read it here again. Multi-line values "
        "(an SSH key) are fine.",
    )
    description = forms.CharField(label="Description", max_length=200, required=False)


class SecretNamesField(forms.MultipleChoiceField):
    """The team secrets a notebook, job or deployment gets as environment variables:
    checkboxes of the team's secret names (set per request by ``offer_secret_names``)."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("label", "Secrets")
        kwargs.setdefault(
            "help_text",
            "Each one checked is an environment variable of the same name when it starts "
            "(the team's Settings, Secrets).",
        )
        super().__init__(
            required=False,
            widget=forms.CheckboxSelectMultiple,
            **kwargs,  # type: ignore[arg-type]
        )


def offer_secret_names(form: forms.Form, team: Team, field: str = "secrets") -> forms.Form:
    """Offer ``team``'s secret names in ``form``'s ``field``; a form for a team without
    secrets loses the field (nothing to choose)."""
    names = secret_names(team)
    if not names:
        form.fields.pop(field, None)
        return form
    choice = form.fields[field]
    assert isinstance(choice, forms.MultipleChoiceField)  # noqa: S101
    choice.choices = [(n, n) for n in names]
    return form
