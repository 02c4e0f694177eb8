"""API v1 shapes of jobs, runs and attempts, and what the job calls accept.

Serializers only type and render; every rule (sources, secrets, inputs, schedules, who may
do what) is apps.jobs.services', whose refusals the API answers with their status, code,
message and field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.jobs import selectors
from apps.jobs.models import Attempt, Job, Run, RunFile
from apps.jobs.schedules import next_due

if TYPE_CHECKING:
    from apps.machines.models import MachineType


class InputSerializer(serializers.Serializer):
    name = serializers.CharField(
        max_length=80, required=False, help_text="Its folder under /datasets (the dataset's slug)."
    )
    version = serializers.IntegerField(help_text="A dataset version's id.")


class RunSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Run
        fields = ["id", "number", "status", "trigger", "created_at", "ended_at", "exit_code"]
        read_only_fields = fields


class JobSerializer(serializers.ModelSerializer):
    """A job as a person sees it. Context (optional, saves queries in lists): ``last_runs``
    maps job id -> its latest run."""

    machine_type: serializers.SlugRelatedField[MachineType] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    notebook = serializers.IntegerField(source="notebook_id", read_only=True, allow_null=True)
    created_by = serializers.EmailField(source="created_by.email", read_only=True, default=None)
    # Named apart from any value: these are the team secrets' names, never their values.
    secret_names = serializers.ListField(
        source="secrets", child=serializers.CharField(), read_only=True
    )
    schedule_next_at = serializers.SerializerMethodField(
        help_text="When its schedule is next due (null: no schedule, or paused)."
    )
    last_run = serializers.SerializerMethodField(help_text="Its latest run, if it ever ran.")

    class Meta:
        model = Job
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "source",
            "notebook",
            "git_url",
            "git_ref",
            "git_secret",
            "entrypoint",
            "command",
            "notebook_path",
            "parameters",
            "machine_type",
            "template",
            "env",
            "secret_names",
            "inputs",
            "output",
            "output_name",
            "keep_files_days",
            "timeout_seconds",
            "max_attempts",
            "grace_seconds",
            "concurrency",
            "schedule",
            "schedule_timezone",
            "schedule_paused",
            "schedule_last_at",
            "schedule_next_at",
            "last_run",
            "created_at",
            "created_by",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_schedule_next_at(self, job: Job) -> str | None:
        if not job.schedule or job.schedule_paused:
            return None
        after = max(job.schedule_last_at or timezone.now(), timezone.now())
        return next_due(job.schedule, job.schedule_timezone, after).isoformat()

    @extend_schema_field(RunSummarySerializer(allow_null=True))
    def get_last_run(self, job: Job) -> dict[str, Any] | None:
        last_runs: dict[int, Run] | None = self.context.get("last_runs")
        if last_runs is not None:
            run = last_runs.get(job.pk)
        else:
            run = selectors.job_runs(job.team, job).first()
        return RunSummarySerializer(run).data if run is not None else None


class JobWriteSerializer(serializers.Serializer):
    """What a job is made or changed with (every field optional when changing)."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    # A field named "source", as the job's is (Field.source is another thing to mypy).
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=Job.Source.choices, required=False
    )
    notebook = serializers.IntegerField(
        required=False, allow_null=True, help_text='Source "notebook": the notebook\'s id.'
    )
    git_url = serializers.CharField(max_length=500, required=False, allow_blank=True)
    git_ref = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text="A branch, tag or commit."
    )
    git_secret = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        help_text="The name of a team secret holding an HTTPS token or an SSH deploy key.",
    )
    entrypoint = serializers.ChoiceField(choices=Job.Entrypoint.choices, required=False)
    command = serializers.CharField(max_length=10_000, required=False, allow_blank=True)
    notebook_path = serializers.CharField(max_length=500, required=False, allow_blank=True)
    parameters = serializers.DictField(
        required=False, help_text="papermill's parameters of a notebook run."
    )
    machine_type = serializers.CharField(
        max_length=40, required=False, help_text="A machine type's slug."
    )
    template = serializers.CharField(
        max_length=40, required=False, help_text="A notebook template's slug (its image)."
    )
    env = serializers.DictField(
        child=serializers.CharField(max_length=10_000, allow_blank=True), required=False
    )
    secret_names = serializers.ListField(
        source="secrets",
        child=serializers.CharField(max_length=64),
        required=False,
        max_length=100,
        help_text="Team secrets' names, given to the run as environment variables.",
    )
    inputs = InputSerializer(many=True, required=False)
    output = serializers.ChoiceField(choices=Job.Output.choices, required=False)
    output_name = serializers.CharField(max_length=80, required=False, allow_blank=True)
    keep_files_days = serializers.IntegerField(required=False)
    timeout_seconds = serializers.IntegerField(
        required=False, help_text="Every attempt together; 0 = no limit."
    )
    max_attempts = serializers.IntegerField(
        required=False, help_text="Attempts in all when the host or container is lost."
    )
    grace_seconds = serializers.IntegerField(
        required=False, help_text="Between SIGTERM and SIGKILL on cancel or timeout."
    )
    concurrency = serializers.IntegerField(required=False, help_text="Runs of it at once.")
    schedule = serializers.CharField(
        max_length=100, required=False, allow_blank=True, help_text='Cron, e.g. "0 3 * * *".'
    )
    schedule_timezone = serializers.CharField(max_length=64, required=False)
    schedule_paused = serializers.BooleanField(required=False)


class RunChangesSerializer(serializers.Serializer):
    """A run's definition edited for this run only (a re-run, or a run with changes)."""

    changes = serializers.DictField(
        required=False,
        help_text="Definition fields as a job takes them (command, env, parameters, "
        "machine_type, secret_names, ...): this run only.",
    )

    def validate_changes(self, changes: dict[str, Any]) -> dict[str, Any]:
        if "secret_names" in changes:
            changes = {**changes, "secrets": changes["secret_names"]}
            del changes["secret_names"]
        return changes


class AttemptSerializer(serializers.ModelSerializer):
    machine_type: serializers.SlugRelatedField[MachineType] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    host = serializers.CharField(source="host.name", read_only=True, default=None)

    class Meta:
        model = Attempt
        fields = [
            "number",
            "status",
            "status_message",
            "machine_type",
            "host",
            "requested_at",
            "started_at",
            "finished_at",
            "ended_at",
            "end_reason",
            "exit_code",
        ]
        read_only_fields = fields


class RunFileSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=RunFile.Kind.choices)
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()
    expires_at = serializers.DateTimeField()
    url = serializers.CharField(help_text="Its download (a signed-in member's).")


class VersionMadeSerializer(serializers.Serializer):
    dataset = serializers.CharField(required=False, help_text="A dataset version's dataset.")
    model = serializers.CharField(required=False, help_text="A model version's model.")
    number = serializers.IntegerField()
    url = serializers.CharField(help_text="Its page on Lattice.")


class OutputsSerializer(serializers.Serializer):
    state = serializers.CharField(help_text="none, saving, saved or failed.")
    message = serializers.CharField()
    dataset_version = VersionMadeSerializer(allow_null=True)
    model_version = VersionMadeSerializer(allow_null=True)


class RunSerializer(serializers.ModelSerializer):
    """A run. Context: ``costs`` (run id -> cost, or None where nothing is charged) and,
    for one run's page, ``attempts`` and ``files``."""

    triggered_by = serializers.EmailField(source="triggered_by.email", read_only=True, default=None)
    rerun_of = serializers.IntegerField(source="rerun_of.number", read_only=True, default=None)
    duration_seconds = serializers.SerializerMethodField(
        help_text="From its first start to its end (or now); null before it started."
    )
    cost = serializers.SerializerMethodField(
        help_text="What it has cost so far, in the plan's currency; null when unknown "
        "(nothing is billed on this installation)."
    )

    class Meta:
        model = Run
        fields = [
            "id",
            "number",
            "status",
            "status_message",
            "trigger",
            "triggered_by",
            "rerun_of",
            "git_commit",
            "created_at",
            "started_at",
            "ended_at",
            "deadline_at",
            "duration_seconds",
            "exit_code",
            "cancel_requested_at",
            "outputs_state",
            "outputs_message",
            "cost",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_duration_seconds(self, run: Run) -> int | None:
        return selectors.run_duration(run)

    @extend_schema_field(serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True))
    def get_cost(self, run: Run) -> str | None:
        costs = self.context.get("costs")
        if costs is None or run.pk not in costs:
            return None
        return str(costs[run.pk])


class RunDetailSerializer(RunSerializer):
    definition = serializers.JSONField(read_only=True, help_text="The job as it was for this run.")
    attempts = serializers.SerializerMethodField()
    files = serializers.SerializerMethodField(help_text="The files it kept, until they expire.")
    outputs = serializers.SerializerMethodField(help_text="The versions it made.")
    notebook_url = serializers.SerializerMethodField(
        help_text="Where its executed notebook opens, rendered read-only on the results "
        "origin (null: it kept none)."
    )

    class Meta(RunSerializer.Meta):
        fields = [
            *RunSerializer.Meta.fields,
            "definition",
            "attempts",
            "files",
            "outputs",
            "notebook_url",
        ]
        read_only_fields = fields

    @extend_schema_field(AttemptSerializer(many=True))
    def get_attempts(self, run: Run) -> Any:
        return AttemptSerializer(self.context.get("attempts", []), many=True).data

    @extend_schema_field(RunFileSerializer(many=True))
    def get_files(self, run: Run) -> Any:
        return RunFileSerializer(self._outputs(run)["files"], many=True).data

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_notebook_url(self, run: Run) -> str | None:
        return self._outputs(run)["notebook_url"] or None

    @extend_schema_field(OutputsSerializer)
    def get_outputs(self, run: Run) -> dict[str, Any]:
        described = self._outputs(run)
        keys = ("state", "message", "dataset_version", "model_version")
        return {k: described[k] for k in keys}

    def _outputs(self, run: Run) -> dict[str, Any]:
        """apps.jobs.outputs.outputs_described(run), given by the view as context."""
        return cast("dict[str, Any]", self.context["outputs"])
