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
