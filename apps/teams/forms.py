from __future__ import annotations

from django import forms

from apps.teams.models import Role


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
