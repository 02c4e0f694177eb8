"""Notebooks, their sessions (each start..stop) and the events a person watches.

A notebook keeps what the user wants (``desired_state``) apart from what was
last observed (``status``). Each start opens a ``NotebookSession`` that holds
the placement, the runtime's state and the times billing reads; a session is
closed exactly once, with the reason it ended. ``NotebookEvent`` rows are the
durable history of status changes (the live stream carries them too).
``NotebookMount`` rows are the dataset versions a notebook sees read-only at
``/datasets/<name>`` (apps.notebooks.mounts).
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models

from apps.core.tenancy import TeamManager, TeamScopedManager
from apps.datasets.models import DatasetVersion


class Status(models.TextChoices):
    QUEUED = "queued", "Queued"
    SCHEDULED = "scheduled", "Scheduled"
    PULLING = "pulling", "Pulling image"
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"
    LOST = "lost", "Lost"


# A session in one of these holds (or waits for) resources; the others are over.
ACTIVE_STATUSES = frozenset(
    {
        Status.QUEUED,
        Status.SCHEDULED,
        Status.PULLING,
        Status.STARTING,
        Status.RUNNING,
        Status.STOPPING,
    },
)
STARTING_STATUSES = frozenset({Status.QUEUED, Status.SCHEDULED, Status.PULLING, Status.STARTING})


class TeamNotebookSettings(models.Model):
    """A team's notebook defaults and the stable id of its shared ``/storage`` volume."""

    team = models.OneToOneField(
        "teams.Team",
        on_delete=models.CASCADE,
        related_name="notebook_settings",
    )
    storage_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Minutes without activity before a running notebook is stopped; 0 = never.
    idle_timeout_minutes = models.PositiveIntegerField(default=60)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    def __str__(self) -> str:
        return f"notebook settings of {self.team}"

    @property
    def storage_volume(self) -> str:
        return f"lattice-team-{self.storage_id.hex}"


class Notebook(models.Model):  # type: ignore[django-manager-missing]
    class Desired(models.TextChoices):
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=80)
    template = models.CharField(max_length=40)
    # Only for the "custom" template: a validated image reference.
    custom_image = models.CharField(max_length=255, blank=True)
    machine_type = models.ForeignKey(
        "machines.MachineType",
        on_delete=models.PROTECT,
        related_name="+",
    )
    desired_state = models.CharField(
        max_length=16,
        choices=Desired.choices,
        default=Desired.STOPPED,
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.STOPPED)
    # What the person should read next to the status: a phase, or what went wrong and what to do.
    status_message = models.CharField(max_length=500, blank=True)
    # Stable for the notebook's whole life: renaming never changes where its files are.
    volume_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Minutes; None = the team's default, 0 = never stop for idleness.
    idle_timeout_minutes = models.PositiveIntegerField(null=True, blank=True)
    # A Git repository cloned into /notebooks/<repo> on a start that does not find it there:
    # an https:// or ssh URL, a branch, tag or commit, and the team secret with its token or
    # deploy key (apps.jobs.sources: the same clone as a job's).
    git_url = models.CharField(max_length=500, blank=True)
    git_ref = models.CharField(max_length=200, blank=True)
    git_secret = models.CharField(max_length=64, blank=True)
    # Team secrets it gets as environment variables, by name (apps.teams.secrets).
    secrets = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Set when deleted: the row stays for billing and history, hidden everywhere else.
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Where its files are (issue 20, apps.notebooks.volumes): the host whose volume holds the
    # newest copy of /notebooks; None before its first start, and for a copy made from a
    # snapshot (whose first start restores that snapshot wherever it is placed).
    volume_host = models.ForeignKey(
        "machines.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # True while the volume on ``volume_host`` holds exactly the newest ready snapshot's
    # files (a snapshot taken after it stopped, and it has not run there since): a start
    # elsewhere can restore that snapshot and lose nothing.
    volume_saved = models.BooleanField(default=False)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "name"],
                condition=models.Q(deleted_at__isnull=True),
                name="notebooks_unique_live_name",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def volume(self) -> str:
        return f"lattice-nb-{self.volume_id.hex}"

    @property
    def stream(self) -> str:
        """The name of this notebook's live stream (status and logs)."""
        return f"notebook-{self.pk}"


class NotebookSession(models.Model):  # type: ignore[django-manager-missing]
    """One start..stop of a notebook: where it ran, for how long, and how it ended."""

    class ExitReason(models.TextChoices):
        STOPPED = "stopped", "Stopped"
        IDLE = "idle", "Stopped when idle"
        RESTARTED = "restarted", "Restarted"
        FAILED = "failed", "Failed to start"
        EXITED = "exited", "Exited"
        LOST = "lost", "Lost"
        CANCELLED = "cancelled", "Cancelled while queued"
        DELETED = "deleted", "Notebook deleted"
        PLAN_LIMIT = "plan_limit", "Stopped by the plan's limits"
        SPEND_CAP = "spend_cap", "Stopped at the spend cap"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    notebook = models.ForeignKey(Notebook, on_delete=models.CASCADE, related_name="sessions")
    machine_type = models.ForeignKey(
        "machines.MachineType",
        on_delete=models.PROTECT,
        related_name="+",
    )
    template = models.CharField(max_length=40)
    image = models.CharField(max_length=255)
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    host = models.ForeignKey(
        "machines.Host",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    placement = models.OneToOneField(
        "machines.Placement",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="notebook_session",
    )
    # The runtime's JSON state (container id, port, ...) as the agent returned it.
    runtime_state = models.JSONField(default=dict, blank=True)
    # Where the proxy reaches Jupyter, and the secret it sends there (never to the browser).
    endpoint = models.CharField(max_length=200, blank=True)
    jupyter_token = models.CharField(max_length=64, editable=False)
    requested_at = models.DateTimeField(auto_now_add=True)
    # When the workload started (container up): billing counts from here.
    started_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    exit_reason = models.CharField(max_length=16, choices=ExitReason.choices, blank=True)
    # The last start step that happened (for the reconciler: nothing for a while means stuck).
    progressed_at = models.DateTimeField(auto_now_add=True)
    start_attempts = models.PositiveSmallIntegerField(default=0)
    # Idle shutdown: the last activity seen (Jupyter's own, or "Extend"), and the warning.
    activity_at = models.DateTimeField(null=True, blank=True)
    idle_warned_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-requested_at", "-pk"]
        constraints = [
            # One open session per notebook: double-clicking Start starts one container.
            models.UniqueConstraint(
                fields=["notebook"],
                condition=models.Q(ended_at__isnull=True),
                name="notebooks_one_open_session",
            ),
        ]
        indexes = [models.Index(fields=["status", "ended_at"])]

    def __str__(self) -> str:
        return f"{self.notebook} session {self.pk}"

    @property
    def workload(self) -> str:
        """The workload's name on its host, and the placement's: stable and unique."""
        return f"nb-{self.notebook_id}-s{self.pk}"

    @property
    def base_path(self) -> str:
        return f"/nb/{self.notebook_id}/"


class NotebookEvent(models.Model):
    """A status change or start phase, kept for the events API and the history panel."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    notebook = models.ForeignKey(Notebook, on_delete=models.CASCADE, related_name="events")
    session = models.ForeignKey(
        NotebookSession,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="events",
    )
    status = models.CharField(max_length=16, choices=Status.choices)
    phase = models.CharField(max_length=32, blank=True)
    message = models.CharField(max_length=500, blank=True)
    percent = models.PositiveSmallIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.notebook}: {self.status} {self.phase}"


class NotebookMount(models.Model):
    """A dataset version a notebook sees read-only at ``/datasets/<name>`` from its next start.

    The version may belong to another team when its dataset is public (the catalogue):
    ``team`` is always the notebook's.
    """

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    notebook = models.ForeignKey(Notebook, on_delete=models.CASCADE, related_name="mounts")
    # Deleting a dataset (or its team) takes its mounts with it, other teams' too: a notebook
    # then starts without that folder. Blocking would let one team stop another deleting.
    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="+")
    # The folder under /datasets/.
    name = models.SlugField(max_length=80)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # Named when mounts were rows of the datasets app; the name is the database's.
            models.UniqueConstraint(fields=["notebook", "name"], name="datasets_mount_name_once"),
        ]

    def __str__(self) -> str:
        return f"/datasets/{self.name}"


class NotebookSnapshot(models.Model):  # type: ignore[django-manager-missing]
    """A notebook's /notebooks files at one moment, kept in the team's blob store (issue 20).

    Taken by the host that holds the volume (apps.machines.agent ``agent.snapshot``, through a
    save ticket: apps.models.services.saves), incrementally: a file the blob store holds
    already costs nothing to send. A start on another host restores the newest ready one.
    """

    class State(models.TextChoices):
        SAVING = "saving", "Saving"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    class Reason(models.TextChoices):
        STOP = "stop", "When it stopped"
        SCHEDULE = "schedule", "While it ran, on schedule"
        MOVE = "move", "Before it moved to another host"
        MANUAL = "manual", "Taken by hand"
        COPY = "copy", "Copied from another notebook's snapshot"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    notebook = models.ForeignKey(Notebook, on_delete=models.CASCADE, related_name="snapshots")
    # The session whose files it holds (the one running, or the one that just stopped).
    session = models.ForeignKey(
        NotebookSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The host that read the volume.
    host = models.ForeignKey(
        "machines.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.CharField(max_length=10, choices=Reason.choices)
    state = models.CharField(max_length=8, choices=State.choices, default=State.SAVING)
    save_ticket = models.ForeignKey(
        "models.SaveTicket", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # For a copy's first snapshot: the snapshot (of another notebook) it was made from.
    copied_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    file_count = models.PositiveIntegerField(default=0)
    total_bytes = models.PositiveBigIntegerField(default=0)
    # Of those, what the host had to send (the rest the blob store held already).
    sent_bytes = models.PositiveBigIntegerField(default=0)
    failure = models.CharField(max_length=1000, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["notebook", "state", "-created_at"])]
        constraints = [
            # One snapshot being taken of a notebook at a time.
            models.UniqueConstraint(
                fields=["notebook"],
                condition=models.Q(state="saving"),
                name="notebooks_one_snapshot_saving",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.notebook} snapshot {self.pk}"


class SnapshotFile(models.Model):
    """One file of a snapshot: its path under /notebooks, its bytes (a blob), its mode."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    snapshot = models.ForeignKey(NotebookSnapshot, on_delete=models.CASCADE, related_name="files")
    path = models.CharField(max_length=1024)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    blob = models.ForeignKey("datasets.Blob", on_delete=models.PROTECT, related_name="+")
    mode = models.PositiveIntegerField(default=0o644)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["path"]
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "path"], name="notebooks_snapshot_path"),
        ]

    def __str__(self) -> str:
        return self.path
