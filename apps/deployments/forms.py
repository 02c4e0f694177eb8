"""Forms of the deployment pages. They only parse what was sent; the rules (names, replica
bounds, a ready version of this team, machine types, env names, traffic that sums to 100)
live in apps.deployments.services, whose refusals are shown next to the field they name."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from django import forms

from apps.deployments.models import Deployment, Revision
from apps.deployments.services import RevisionSpec
from apps.machines.selectors import machine_types_offered
from apps.models.models import ModelVersion
from apps.teams.forms import SecretNamesField, offer_secret_names

if TYPE_CHECKING:
    from apps.teams.models import Team


class _MachineTypeField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        gpu = f", {obj.gpu_count}x {obj.gpu_model}" if obj.gpu_count else ""
        price = f"${obj.hourly_price:.2f}/h a replica" if obj.hourly_price else "free"
        return f"{obj.name} ({obj.vcpus} vCPU, {obj.memory_gib} GiB{gpu}, {price})"


class _VersionField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.model.name} v{obj.number}"


def _pairs(text: str, what: str) -> dict[str, str]:
    """``NAME=value`` lines as a dict (blank lines skipped)."""
    pairs: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise forms.ValidationError(f"Line {number} of the {what} is not NAME=value.")
        pairs[name.strip()] = value
    return pairs


class SpecForm(forms.Form):
    """A revision's spec: what is served, on what, how many, with which environment."""

    # Not required here: a custom image may serve none; the service says when one is needed.
    model_version = _VersionField(
        label="Model version",
        queryset=ModelVersion.objects.none(),
        required=False,
        help_text="With an alias below: the model whose alias to follow.",
    )
    follows_alias = forms.CharField(
        label="Follow an alias instead (optional)",
        required=False,
        max_length=40,
        help_text="An alias of the version's model, e.g. production: moving it rolls out a "
        "new revision on its own.",
    )
    serving = forms.ChoiceField(
        label="Serving", choices=Revision.Serving.choices, initial=Revision.Serving.BUILTIN
    )
    image = forms.CharField(label="Image (custom only)", required=False, max_length=255)
    port = forms.IntegerField(label="Port (custom only)", initial=8080, min_value=1)
    command = forms.CharField(
        label="Command (custom only, optional)",
        required=False,
        help_text="As you would type it; empty: the image's own.",
    )
    health_path = forms.CharField(label="Health path (custom only)", required=False, max_length=200)
    machine_type = _MachineTypeField(label="Machine type", queryset=machine_types_offered())
    min_replicas = forms.IntegerField(label="Min replicas", initial=1, min_value=0)
    max_replicas = forms.IntegerField(label="Max replicas", initial=1, min_value=1)
    target_in_flight = forms.IntegerField(
        label="Target in-flight requests per replica", initial=4, min_value=1
    )
    scale_to_zero_after = forms.IntegerField(
        label="Scale to zero after (seconds idle)",
        required=False,
        initial=900,
        min_value=1,
        help_text="Only with min replicas 0. Empty: never.",
    )
    startup_timeout = forms.IntegerField(
        label="Startup timeout (seconds)", initial=600, min_value=1
    )
    canary_percent = forms.IntegerField(
        label="Canary percent",
        initial=0,
        min_value=0,
        max_value=99,
        help_text="A new revision takes this share first, then all (0: all at once).",
    )
    env = forms.CharField(
        label="Environment (NAME=value per line)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    secrets = forms.CharField(
        label="Secrets (NAME=value per line)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Stored encrypted and never shown again.",
    )
    team_secrets = SecretNamesField(label="Team secrets")

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        offer_secret_names(self, team, "team_secrets")
        field = self.fields["model_version"]
        assert isinstance(field, forms.ModelChoiceField)  # noqa: S101 - declared above
        field.queryset = (
            ModelVersion.objects.for_team(team)
            .filter(status=ModelVersion.Status.READY)
            .select_related("model")
            .order_by("-pk")
        )

    def clean_env(self) -> dict[str, str]:
        return _pairs(self.cleaned_data.get("env", ""), "environment")

    def clean_secrets(self) -> dict[str, str]:
        return _pairs(self.cleaned_data.get("secrets", ""), "secrets")

    def clean_command(self) -> list[str]:
        try:
            return shlex.split(self.cleaned_data.get("command", ""))
        except ValueError as exc:
            raise forms.ValidationError(f"The command does not parse: {exc}.") from exc

    def spec(self, *, keep_secrets: bool = False) -> RevisionSpec:
        """The spec the form says; with ``keep_secrets``, empty secrets keep the previous."""
        data = self.cleaned_data
        version = data["model_version"]
        alias = data["follows_alias"].strip()
        return RevisionSpec(
            machine_type=data["machine_type"],
            # Following an alias, the version only names its model: the alias says which.
            model_version=None if alias else version,
            model=version.model if alias and version is not None else None,
            follows_alias=alias,
            serving=data["serving"],
            image=data["image"].strip(),
            port=data["port"],
            command=data["command"],
            health_path=data["health_path"].strip(),
            min_replicas=data["min_replicas"],
            max_replicas=data["max_replicas"],
            target_in_flight=data["target_in_flight"],
            scale_to_zero_after=data["scale_to_zero_after"],
            startup_timeout=data["startup_timeout"],
            canary_percent=data["canary_percent"],
            env=data["env"],
            secrets=None if keep_secrets and not data["secrets"] else data["secrets"],
            team_secrets=data.get("team_secrets") or [],
        )


def spec_initial(revision: Revision) -> dict[str, Any]:
    """A revision's spec as the form's initial values (its secrets are never shown)."""
    return {
        "model_version": revision.model_version_id,
        "follows_alias": revision.follows_alias,
        "serving": revision.serving,
        "image": revision.image,
        "port": revision.port,
        "command": shlex.join(revision.command or []),
        "health_path": revision.health_path,
        "machine_type": revision.machine_type_id,
        "min_replicas": revision.min_replicas,
        "max_replicas": revision.max_replicas,
        "target_in_flight": revision.target_in_flight,
        "scale_to_zero_after": revision.scale_to_zero_after,
        "startup_timeout": revision.startup_timeout,
        "canary_percent": revision.canary_percent,
        "env": "\n".join(f"{k}={v}" for k, v in (revision.env or {}).items()),
        "team_secrets": list(revision.team_secrets or []),
    }


class _AboutForm(forms.Form):
    """What a person calls a deployment and who may call it."""

    # Not required here: the service says what is wrong with a name, in its own words.
    name = forms.CharField(label="Name", required=False, max_length=80)
    description = forms.CharField(
        label="Description (optional)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
    )
    auth_mode = forms.ChoiceField(
        label="Who may call it", choices=Deployment.Auth.choices, initial=Deployment.Auth.PROTECTED
    )


class DeploymentCreateForm(_AboutForm, SpecForm):
    field_order = ["name", "description", "auth_mode"]


class DeploymentChangeForm(SpecForm):
    reason = forms.CharField(
        label="Why (optional)", required=False, max_length=200, help_text='e.g. "more replicas"'
    )


class DeploymentSettingsForm(_AboutForm):
    rate_limit_per_minute = forms.IntegerField(
        label="Requests a minute per caller",
        min_value=0,
        help_text="0: no limit.",
    )


class KeyForm(forms.Form):
    name = forms.CharField(label="Key name", required=False, max_length=80)


class TrafficForm(forms.Form):
    """One percent per revision that may take traffic (its replicas are ready)."""

    def __init__(self, *args: Any, revisions: list[Revision], current: dict[str, int], **kw: Any):
        super().__init__(*args, **kw)
        self.revisions = revisions
        for revision in revisions:
            self.fields[f"r{revision.pk}"] = forms.IntegerField(
                label=f"r{revision.number}",
                min_value=0,
                max_value=100,
                initial=current.get(str(revision.pk), 0),
            )

    def split(self) -> dict[int, int]:
        return {r.pk: self.cleaned_data[f"r{r.pk}"] for r in self.revisions}


class DeleteForm(forms.Form):
    confirm = forms.CharField(label="Type the deployment's name to confirm", required=False)

    def __init__(self, *args: Any, deployment: Deployment, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deployment = deployment

    def clean_confirm(self) -> str:
        typed = self.cleaned_data.get("confirm", "")
        if typed.strip() != self.deployment.name:
            raise forms.ValidationError(f"Type {self.deployment.name} to delete it.")
        return typed
