"""Jobs: a saved definition run to completion in the background, as immutable runs.

A **job** is a team's saved definition: where its files come from (a snapshot of a
notebook's files, or a Git repository at a branch, tag or commit), what to run (a shell
command, or a whole notebook executed headless with papermill and parameters), on which
machine type and image, with what environment, team secrets, dataset inputs (read-only at
``/datasets/<name>``) and outputs (what is written to ``/outputs`` becomes a new version of a
dataset or model, or is kept as the run's files for a set time), a maximum run time, a retry
policy, a concurrency limit and an optional cron schedule.

A **run** is one execution of a job: the definition as it was when it started
(``definition``, immutable), who or what started it, its status, exit code, times and
results. A run is carried out by one or more **attempts**: each one workload
(``jb-<attempt>``) on a host, placed, started and found again like a notebook session. A run
is tried again (a new attempt) only when its host or container was lost, never for a
non-zero exit; each attempt is billed for its own seconds (apps.billing).

``RunFile`` rows are the files a run kept (its executed notebook, its artifacts), over the
content-addressed blob store, until ``expires_at``.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models

from apps.core.tenancy import TeamManager, TeamScopedManager


class Job(models.Model):  # type: ignore[django-manager-missing]
    class Source(models.TextChoices):
        NOTEBOOK = "notebook", "A notebook's files"
        GIT = "git", "A Git repository"
        NONE = "none", "No files (the command alone)"

    class Entrypoint(models.TextChoices):
        COMMAND = "command", "A shell command"
        NOTEBOOK = "notebook", "A notebook, run top to bottom"

    class Output(models.TextChoices):
        NONE = "none", "Nothing kept"
        ARTIFACTS = "artifacts", "Kept as the run's files"
        DATASET = "dataset", "A new dataset version"
        MODEL = "model", "A new model version"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=80)
    slug = models.SlugField(max_length=60)
    description = models.TextField(blank=True, max_length=2000)

    # --- where its files come from (copied into /workspace, the working folder) ---
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.NONE)
    # Source "notebook": that notebook's /notebooks, copied when each attempt starts.
    notebook = models.ForeignKey(
        "notebooks.Notebook", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Source "git": an https:// or ssh URL (git@host:path too), a branch, tag or commit, and
    # the name of the team secret holding an HTTPS token or an SSH deploy key (or none).
    git_url = models.CharField(max_length=500, blank=True)
    git_ref = models.CharField(max_length=200, blank=True)
    git_secret = models.CharField(max_length=64, blank=True)

    # --- what it runs ---
    entrypoint = models.CharField(
        max_length=10, choices=Entrypoint.choices, default=Entrypoint.COMMAND
    )
    # A shell command, run in /workspace (``sh -c``).
    command = models.TextField(blank=True, max_length=10_000)
    # Entrypoint "notebook": its path under /workspace, and papermill's parameters.
    notebook_path = models.CharField(max_length=500, blank=True)
    parameters = models.JSONField(default=dict, blank=True)

    # --- where and with what ---
    machine_type = models.ForeignKey(
        "machines.MachineType", on_delete=models.PROTECT, related_name="+"
    )
    # A notebook template's slug (its image), as a notebook names one.
    template = models.CharField(max_length=40)
    # Plain environment variables {name: value}; team secrets by name (apps.teams.secrets).
    env = models.JSONField(default=dict, blank=True)
    secrets = models.JSONField(default=list, blank=True)
    # Dataset versions mounted read-only: [{"name": "<mount name>", "version": <pk>}].
    inputs = models.JSONField(default=list, blank=True)

    # --- what it leaves ---
    output = models.CharField(max_length=10, choices=Output.choices, default=Output.ARTIFACTS)
    # Output "dataset" or "model": the name of the dataset or model (made when missing).
    output_name = models.CharField(max_length=80, blank=True)
    # How long a run's files (artifacts, executed notebook) are kept.
    keep_files_days = models.PositiveSmallIntegerField(default=30)

    # --- control ---
    # The most a run may take, every attempt together (seconds); 0 = no limit.
    timeout_seconds = models.PositiveIntegerField(default=24 * 3600)
    # Attempts in all when the host or container is lost (1 = no retry).
    max_attempts = models.PositiveSmallIntegerField(default=3)
    # Seconds between SIGTERM and SIGKILL when a run is cancelled or times out.
    grace_seconds = models.PositiveSmallIntegerField(default=30)
    # Runs of this job at once; more wait their turn (queued).
    concurrency = models.PositiveSmallIntegerField(default=1)
    # A cron expression ("0 3 * * *"), in ``schedule_timezone``; empty = no schedule.
    schedule = models.CharField(max_length=100, blank=True)
    schedule_timezone = models.CharField(max_length=64, default="UTC")
    schedule_paused = models.BooleanField(default=False)
    # The last time the schedule was due and acted on (a run, or a skip): never twice.
    schedule_last_at = models.DateTimeField(null=True, blank=True)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who last changed what its runs do (its definition, its schedule, resuming it): whom a
    # scheduled run acts as (apps.jobs.spec.run_actor), so a member who plants a command in
    # another's job is the one its runs act as. Null on jobs made before it: the creator.
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    # The fields a run's ``definition`` copies (apps.jobs.services.job_definition).
    DEFINITION_FIELDS: ClassVar[tuple[str, ...]] = (
        "source",
        "notebook_id",
        "git_url",
        "git_ref",
        "git_secret",
        "entrypoint",
        "command",
        "notebook_path",
        "parameters",
        "machine_type_id",
        "template",
        "env",
        "secrets",
        "inputs",
        "output",
        "output_name",
        "keep_files_days",
        "timeout_seconds",
        "max_attempts",
        "grace_seconds",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "slug"],
                condition=models.Q(deleted_at__isnull=True),
                name="jobs_unique_live_slug",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Run(models.Model):  # type: ignore[django-manager-missing]
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        PLACING = "placing", "Placing"
        STARTING = "starting", "Starting"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        TIMED_OUT = "timed_out", "Timed out"
        LOST = "lost", "Lost"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Started by a member"
        API = "api", "Started through the API"
        SCHEDULE = "schedule", "Started by its schedule"
        RERUN = "rerun", "A re-run"

    class Outputs(models.TextChoices):
        NONE = "", "Nothing to save"
        SAVING = "saving", "Saving"
        SAVED = "saved", "Saved"
        FAILED = "failed", "Not saved"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="runs")
    # Numbered 1, 2, 3... per job.
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    status_message = models.CharField(max_length=1000, blank=True)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.MANUAL)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The re-run of: the run whose definition (maybe edited) this one took.
    rerun_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The job's DEFINITION_FIELDS as they were when it was made: never changed after.
    definition = models.JSONField(default=dict)
    # Git source: the commit it ran (what the ref named at the time), as the run reported it.
    git_commit = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # The first attempt's container up; the last one's end.
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The maximum run time's end (every attempt together), from the first start.
    deadline_at = models.DateTimeField(null=True, blank=True)
    # A run started with a workload token: that token's expiry, the latest its own workload
    # token may expire (a run never outlives, by its token, the workload that started it).
    token_not_after = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The outputs' fate: what /outputs became.
    outputs_state = models.CharField(
        max_length=8, choices=Outputs.choices, default=Outputs.NONE, blank=True
    )
    outputs_message = models.CharField(max_length=1000, blank=True)
    dataset_version = models.ForeignKey(
        "datasets.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    model_version = models.ForeignKey(
        "models.ModelVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-pk"]
        constraints = [
            models.UniqueConstraint(fields=["job", "number"], name="jobs_run_number_once"),
        ]
        indexes = [
            models.Index(fields=["job", "status"]),
            models.Index(fields=["status", "ended_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.job} run {self.number}"

    @property
    def stream(self) -> str:
        """The name of this run's live stream (status and logs)."""
        return f"job-run-{self.pk}"


# A run in one of these is not over.
OPEN_RUN_STATUSES = frozenset(
    {
        Run.Status.QUEUED,
        Run.Status.PLACING,
        Run.Status.STARTING,
        Run.Status.RUNNING,
    }
)


class Attempt(models.Model):
    """One try of a run on a host: one workload, start to end, billed for its own seconds."""

    class Status(models.TextChoices):
        PLACING = "placing", "Placing"
        STARTING = "starting", "Starting"
        RUNNING = "running", "Running"
        # The process ended; its container is kept until its outputs are collected.
        EXITED = "exited", "Exited"
        STOPPING = "stopping", "Stopping"
        ENDED = "ended", "Ended"

    class EndReason(models.TextChoices):
        EXITED = "exited", "The process exited"
        FAILED = "failed", "Failed to start"
        LOST = "lost", "The host or container was lost"
        CANCELLED = "cancelled", "Cancelled"
        TIMED_OUT = "timed_out", "Timed out"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="attempts")
    # 1, 2, 3... within its run.
    number = models.PositiveSmallIntegerField()
    machine_type = models.ForeignKey(
        "machines.MachineType", on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PLACING)
    status_message = models.CharField(max_length=1000, blank=True)
    host = models.ForeignKey(
        "machines.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    placement = models.OneToOneField(
        "machines.Placement",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="job_attempt",
    )
    runtime_state = models.JSONField(default=dict, blank=True)
    requested_at = models.DateTimeField(auto_now_add=True)
    # Container up: billing counts from here; the process's end (or last seen): to here.
    started_at = models.DateTimeField(null=True, blank=True)
    # When the process ended (its exit) or was last seen; billing stops here.
    finished_at = models.DateTimeField(null=True, blank=True)
    # When the attempt was closed (its container stopped and its placement freed).
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=10, choices=EndReason.choices, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    progressed_at = models.DateTimeField(auto_now_add=True)
    start_attempts = models.PositiveSmallIntegerField(default=0)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="jobs_attempt_number_once"),
        ]
        indexes = [models.Index(fields=["status", "ended_at"])]

    def __str__(self) -> str:
        return f"{self.run} attempt {self.number}"

    @property
    def workload(self) -> str:
        """Its workload's name on its host, and its placement's."""
        return f"jb-{self.pk}"


class RunFile(models.Model):
    """A file a run kept: its executed notebook, or an artifact (a file of /outputs)."""

    class Kind(models.TextChoices):
        RESULT = "result", "The executed notebook"
        ARTIFACT = "artifact", "An artifact"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="files")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    path = models.CharField(max_length=1024)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    blob = models.ForeignKey("datasets.Blob", on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["kind", "path"]
        constraints = [
            models.UniqueConstraint(fields=["run", "kind", "path"], name="jobs_run_file_once"),
        ]

    def __str__(self) -> str:
        return f"{self.run}: {self.path}"
