"""Forms of the job pages. They only parse what was sent (JSON parameters, NAME=value
lines, minutes); the rules live in apps.jobs.services, whose refusals are shown next to
the field they name."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from django import forms

from apps.datasets.models import DatasetVersion
from apps.jobs.models import Job
from apps.jobs.services import JOB_FIELDS
from apps.machines.selectors import machine_types_offered
from apps.notebooks.models import Notebook
from apps.notebooks.templates import CUSTOM, template_choices
from apps.teams.models import TeamSecret

if TYPE_CHECKING:
    from apps.teams.models import Team

# The form's fields that are the service's under another name or unit.
_RENAMED = {"timeout_minutes": "timeout_seconds", "retries": "max_attempts"}


def _env_lines(text: str) -> dict[str, str]:
    """``NAME=value`` lines (blank ones skipped) as a dict."""
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name, sep, value = line.partition("=")
        if not line.strip():
            continue
        if not sep or not name.strip():
            raise forms.ValidationError(f"Line {number} is not NAME=value.")
        env[name.strip()] = value
    return env


class JobForm(forms.Form):
    """A job's definition and schedule, as the create and edit pages show them."""

    name = forms.CharField(max_length=80)
    description = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )
    source = forms.ChoiceField(
        label="Files", choices=Job.Source.choices, initial=Job.Source.NOTEBOOK
    )
    notebook = forms.ModelChoiceField(
        label="Notebook",
        queryset=Notebook.objects.none(),
        required=False,
        help_text="Its files as they are when each run starts (a snapshot).",
    )
    git_url = forms.CharField(
        label="Git repository",
        required=False,
        max_length=500,
        help_text="https://host/repo.git, ssh://… or git@host:repo.git",
    )
    git_ref = forms.CharField(
        label="Branch, tag or commit",
        required=False,
        max_length=200,
        help_text="Empty: its default branch.",
    )
    git_secret = forms.ChoiceField(
        label="Git credential",
        required=False,
        help_text="A team secret holding an HTTPS token or an SSH deploy key.",
    )
    entrypoint = forms.ChoiceField(label="Runs", choices=Job.Entrypoint.choices)
    command = forms.CharField(
        required=False,
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Run with sh in /workspace, e.g. python train.py --epochs 3",
    )
    notebook_path = forms.CharField(
        label="Notebook path",
        required=False,
        max_length=500,
        help_text="Under /workspace, e.g. train.ipynb: run top to bottom with papermill.",
    )
    parameters = forms.CharField(
        label="Parameters (JSON)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text='The notebook\'s parameters, e.g. {"lr": 0.01, "epochs": 3}.',
    )
    machine_type = forms.ModelChoiceField(label="Machine", queryset=machine_types_offered())
    template = forms.ChoiceField(label="Image")
    env = forms.CharField(
        label="Environment",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="NAME=value, one a line.",
    )
    secrets = forms.MultipleChoiceField(
        label="Team secrets",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Given to the run as environment variables of the same names.",
    )
    inputs = forms.MultipleChoiceField(
        label="Dataset versions",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Mounted read-only at /datasets/<dataset>.",
    )
    output = forms.ChoiceField(label="/outputs becomes", choices=Job.Output.choices)
    output_name = forms.CharField(
        label="Dataset or model name", required=False, max_length=80, help_text="Made if missing."
    )
    timeout_minutes = forms.IntegerField(
        label="Maximum run time (minutes)",
        min_value=0,
        initial=24 * 60,
        help_text="Every attempt together; 0 = no limit.",
    )
    retries = forms.IntegerField(
        label="Attempts",
        min_value=1,
        initial=3,
        help_text="Tried again only when the host or container is lost, never after an error.",
    )
    concurrency = forms.IntegerField(label="Runs at once", min_value=1, initial=1)
    schedule = forms.CharField(
        label="Schedule (cron)",
        required=False,
        max_length=100,
        help_text="e.g. 0 3 * * * (03:00 every day). A run still going when it is due is skipped.",
    )
    schedule_timezone = forms.CharField(label="Time zone", max_length=64, initial="UTC")
    schedule_paused = forms.BooleanField(label="Schedule paused", required=False)

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        notebook_field: Any = self.fields["notebook"]
        notebook_field.queryset = Notebook.objects.for_team(team).filter(deleted_at__isnull=True)
        names = list(
            TeamSecret.objects.for_team(team).order_by("name").values_list("name", flat=True)
        )
        git_secret: Any = self.fields["git_secret"]
        git_secret.choices = [("", "None (a public repository)"), *[(n, n) for n in names]]
        secrets: Any = self.fields["secrets"]
        secrets.choices = [(n, n) for n in names]
        template: Any = self.fields["template"]
        template.choices = [(v, label) for v, label in template_choices() if v != CUSTOM]
        versions = (
            DatasetVersion.objects.for_team(team)
            .filter(status=DatasetVersion.Status.READY)
            .select_related("dataset")
            .order_by("dataset__name", "-number")
        )
        inputs: Any = self.fields["inputs"]
        inputs.choices = [(str(v.pk), f"{v.dataset.name} v{v.number}") for v in versions]

    def clean_parameters(self) -> dict[str, Any]:
        text = self.cleaned_data["parameters"].strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except ValueError:
            raise forms.ValidationError('Give the parameters as JSON, e.g. {"lr": 0.01}.') from None
        if not isinstance(value, dict):
            raise forms.ValidationError('Give the parameters as a JSON object, e.g. {"lr": 0.01}.')
        return value

    def clean_env(self) -> dict[str, str]:
        return _env_lines(self.cleaned_data["env"])

    def service_fields(self) -> dict[str, Any]:
        """What the services take, from the cleaned form."""
        data = dict(self.cleaned_data)
        data["timeout_minutes"] = data["timeout_minutes"] * 60
        data["inputs"] = [{"version": int(pk)} for pk in data["inputs"]]
        return {_RENAMED.get(k, k): v for k, v in data.items()}

    @staticmethod
    def initial_of(
        job: Job | None = None, definition: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The form's initial values from a job (and its definition, or a run's)."""
        d = dict(definition or {})
        initial: dict[str, Any] = {}
        if job is not None:
            initial.update(
                name=job.name,
                description=job.description,
                concurrency=job.concurrency,
                schedule=job.schedule,
                schedule_timezone=job.schedule_timezone,
                schedule_paused=job.schedule_paused,
            )
            if not d:
                d = {f: getattr(job, f) for f in Job.DEFINITION_FIELDS}
        if d:
            initial.update({k: v for k, v in d.items() if k in JobForm.base_fields})
            initial["notebook"] = d.get("notebook_id")
            initial["machine_type"] = d.get("machine_type_id")
            initial["parameters"] = (
                json.dumps(d.get("parameters") or {}) if d.get("parameters") else ""
            )
            initial["env"] = "\n".join(f"{k}={v}" for k, v in (d.get("env") or {}).items())
            initial["inputs"] = [str(i["version"]) for i in d.get("inputs") or []]
            initial["timeout_minutes"] = (d.get("timeout_seconds") or 0) // 60
            initial["retries"] = d.get("max_attempts", 3)
        return initial


class RerunForm(JobForm):
    """The edit-and-re-run form: the definition only (the job's name and schedule stay)."""

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, team=team, **kwargs)
        for name in JOB_FIELDS:
            del self.fields[name]
