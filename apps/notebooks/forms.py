"""Forms of the notebook pages. They only parse what was sent; the rules (names, idle limits,
which machine may change when) live in apps.notebooks.services, whose refusals are shown
next to the field they name."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.machines.selectors import machine_types_offered
from apps.notebooks.services import MAX_IDLE_MINUTES
from apps.notebooks.templates import DEFAULT_TEMPLATE, template_labels
from apps.teams.forms import SecretNamesField


class _MachineTypeField(forms.ModelChoiceField):
    # Set per request (with_plan_notes): what the team's plan says of a machine type.
    notes: dict[int, str]

    def label_from_instance(self, obj: Any) -> str:
        machine = obj
        gpu = f", {machine.gpu_count}x GPU" if machine.gpu_count else ""
        price = f"${machine.hourly_price:.2f}/h" if machine.hourly_price else "free"
        note = getattr(self, "notes", {}).get(machine.pk)
        label = f"{machine.name} ({machine.vcpus} vCPU, {machine.memory_gib} GiB{gpu}, {price})"
        return f"{label} · {note}" if note else label


def with_plan_notes(form: forms.Form, notes: dict[int, str]) -> forms.Form:
    """Mark the machine types the team's plan does not include ("needs Pro")."""
    field = form.fields["machine_type"]
    assert isinstance(field, _MachineTypeField)  # noqa: S101
    field.notes = notes
    return form


def _idle_field(help_text: str) -> forms.IntegerField:
    return forms.IntegerField(
        label="Idle shutdown (minutes)",
        required=False,
        min_value=0,
        max_value=MAX_IDLE_MINUTES,
        help_text=help_text,
    )


# The repository cloned into /notebooks/<repo> on a start that does not find it: each
# field's label, longest value and help.
_GIT_FIELDS = {
    "git_url": (
        "Git repository (optional)",
        500,
        (
            "https://… or git@host:team/repo.git: cloned into /notebooks/<repo> when a start "
            "does not find that folder."
        ),
    ),
    "git_ref": ("Branch, tag or commit", 200, "Blank: the repository's default branch."),
    "git_secret": (
        "Team secret with its token or deploy key",
        64,
        (
            "The name of a team secret: an access token (https) or an SSH deploy key (git@…). "
            "Blank for a public repository."
        ),
    ),
}


def _git_field(name: str) -> forms.CharField:
    label, max_length, help_text = _GIT_FIELDS[name]
    return forms.CharField(label=label, required=False, max_length=max_length, help_text=help_text)


class NotebookCreateForm(forms.Form):
    # Not required here: the service says what is wrong with a name, in its own words.
    name = forms.CharField(label="Name", required=False, strip=False)
    template = forms.ChoiceField(
        label="Template", choices=template_labels, initial=DEFAULT_TEMPLATE
    )
    custom_image = forms.CharField(
        label="Image (custom template only)",
        required=False,
        help_text="Any image that starts a Jupyter Server on port 8888.",
    )
    machine_type = _MachineTypeField(
        label="Machine type",
        queryset=machine_types_offered(),
        empty_label=None,
    )
    idle_timeout_minutes = _idle_field("Blank: the team's default. 0: never stop when idle.")
    git_url = _git_field("git_url")
    git_ref = _git_field("git_ref")
    git_secret = _git_field("git_secret")
    secrets = SecretNamesField()


class NotebookUpdateForm(forms.Form):
    name = forms.CharField(label="Name", required=False, strip=False)
    machine_type = _MachineTypeField(
        label="Machine type",
        queryset=machine_types_offered(),
        empty_label=None,
        required=False,
        help_text="Only while stopped; the notebook's files stay.",
    )
    idle_timeout_minutes = _idle_field("Blank: the team's default. 0: never stop when idle.")
    git_url = _git_field("git_url")
    git_ref = _git_field("git_ref")
    git_secret = _git_field("git_secret")
    secrets = SecretNamesField(help_text="From its next start.")


class NotebookDuplicateForm(forms.Form):
    name = forms.CharField(label="Name of the copy", required=False, strip=False)


class NotebookDeleteForm(forms.Form):
    confirmation = forms.CharField(label="Type the notebook's name to confirm", required=False)


class TeamNotebookSettingsForm(forms.Form):
    idle_timeout_minutes = forms.IntegerField(
        label="Default idle shutdown (minutes)",
        min_value=0,
        max_value=MAX_IDLE_MINUTES,
        help_text="Notebooks without their own setting stop after this long idle. 0: never.",
    )
