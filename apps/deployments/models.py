"""Deployments: a model version served behind an endpoint, as immutable revisions.

A **deployment** is a team's named endpoint (``<slug>--<team>.<user-content domain>``, and
``/api/v1/teams/<team>/deployments/<slug>/invoke/...``) with an auth mode. What it serves
is said by its **revisions**: each an immutable spec (the model version, or an alias of a
model to follow, the serving kind, machine type, replica bounds, scaling targets,
environment). Every spec change makes a new revision; rolling back makes a new revision
with an earlier one's spec. ``Deployment.traffic`` says which revisions take what share
of requests now; ``Deployment.rollout`` is the revision being rolled out, if any.

A **replica** is one workload (``dp-<replica>``) of one revision on a host: placed by the
scheduler, started by the host's agent, found again by the reconciler, like a notebook
session (apps.notebooks). It takes traffic only while ``ready``. Its seconds are billed
from ``started_at`` to ``ended_at`` (apps.billing).

``MetricWindow`` rows are what the gateway counted, per revision, per second, per web
process (apps.deployments.metrics); ``DeploymentEvent`` rows the history a person reads.
"""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models

from apps.core.tenancy import TeamManager, TeamScopedManager


class Deployment(models.Model):  # type: ignore[django-manager-missing]
    class Auth(models.TextChoices):
        PUBLIC = "public", "Public (anyone with the address)"
        PROTECTED = "protected", "Protected (a token or a deployment key)"
        PRIVATE = "private", "Private (the team's members, signed in)"

    class Status(models.TextChoices):
        DEPLOYING = "deploying", "Deploying"
        READY = "ready", "Ready"
        SCALED_TO_ZERO = "scaled_to_zero", "Scaled to zero"
        DEGRADED = "degraded", "Degraded"
        FAILED = "failed", "Failed"
        PAUSED = "paused", "Paused"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=80)
    # The first label of its host name is "<slug>--<team slug>": no "--" inside a slug.
    slug = models.SlugField(max_length=40)
    description = models.TextField(blank=True, max_length=2000)
    auth_mode = models.CharField(max_length=10, choices=Auth.choices, default=Auth.PROTECTED)
    # Requests per minute one caller (token, key or address) may send; 0 = no limit.
    rate_limit_per_minute = models.PositiveIntegerField(default=600)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DEPLOYING)
    status_message = models.CharField(max_length=500, blank=True)
    # Which revisions take requests, and what share: {"<revision id>": percent}, summing to
    # 100 (empty until a first revision is ready).
    traffic = models.JSONField(default=dict, blank=True)
    # The revision being rolled out now, if any.
    rollout = models.ForeignKey(
        "deployments.Revision",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Why serving is held at zero replicas (the spend cap, a plan limit); empty otherwise.
    paused_reason = models.CharField(max_length=300, blank=True)
    # The last request the gateway saw (written with its metrics, not per request).
    last_request_at = models.DateTimeField(null=True, blank=True)
    # A request found no ready replica and is being held: the controller starts one.
    wake_requested_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "slug"],
                condition=models.Q(deleted_at__isnull=True),
                name="deployments_slug_per_team",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def stream(self) -> str:
        """Its live stream (status, replicas, metrics, logs)."""
        return f"deployment-{self.pk}"


class Revision(models.Model):  # type: ignore[django-manager-missing]
    """One immutable spec of a deployment. Only the status fields and ``replicas_wanted``
    (the autoscaler's answer) change after it is made."""

    class Serving(models.TextChoices):
        BUILTIN = "builtin", "Lattice's Python model server"
        CUSTOM = "custom", "A custom image"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        STARTING = "starting", "Starting"
        SERVING = "serving", "Serving"
        FAILED = "failed", "Failed"
        RETIRED = "retired", "Retired"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    # What made it: "created", "changed", "alias moved", "rolled back to r3".
    reason = models.CharField(max_length=200, blank=True)
    # The model version it serves (resolved from the alias when it follows one).
    model_version = models.ForeignKey(
        "models.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # An alias of the version's model this revision follows: moving it rolls out a new one.
    follows_alias = models.SlugField(max_length=40, blank=True)
    serving = models.CharField(max_length=8, choices=Serving.choices, default=Serving.BUILTIN)
    # A custom image's reference, port, command (a list; empty: the image's own) and health
    # path; unused for the built-in server.
    image = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(default=8080)
    command = models.JSONField(default=list, blank=True)
    health_path = models.CharField(max_length=200, blank=True)
    machine_type = models.ForeignKey(
        "machines.MachineType", on_delete=models.PROTECT, related_name="+"
    )
    min_replicas = models.PositiveSmallIntegerField(default=1)
    max_replicas = models.PositiveSmallIntegerField(default=1)
    # Autoscaling's target: requests in flight per replica.
    target_in_flight = models.PositiveSmallIntegerField(default=4)
    # Seconds without a request before scaling to zero (only when min_replicas is 0);
    # None: never.
    scale_to_zero_after = models.PositiveIntegerField(null=True, blank=True, default=900)
    # Seconds a new replica may take to say READY before the rollout gives up.
    startup_timeout = models.PositiveIntegerField(default=600)
    # The share of requests it gets first, before all of them (0: straight to 100).
    canary_percent = models.PositiveSmallIntegerField(default=0)
    # Plain environment variables: {"NAME": "value"}.
    env = models.JSONField(default=dict, blank=True)
    # Secret variables, encrypted (apps.core.crypto): never shown again, only their names.
    secret_env = models.BinaryField(blank=True, default=b"", editable=False)
    secret_names = models.JSONField(default=list, blank=True)
    # Team secrets it gets as environment variables, by name (apps.teams.secrets), read when
    # each replica starts.
    team_secrets = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    status_message = models.CharField(max_length=1000, blank=True)
    # How many replicas it should run now (the autoscaler's answer, within min..max; 0 when
    # scaled to zero or retired).
    replicas_wanted = models.PositiveSmallIntegerField(default=0)
    # When replicas_wanted last changed (the stabilisation window counts from here).
    scaled_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    # What may change after it is made; everything else is its spec.
    MUTABLE = frozenset(
        {"status", "status_message", "replicas_wanted", "scaled_at", "ready_at", "retired_at"}
    )
    # Its spec: what a rollback or an alias follow copies into a new revision.
    SPEC_FIELDS = (
        "model_version",
        "follows_alias",
        "serving",
        "image",
        "port",
        "command",
        "health_path",
        "machine_type",
        "min_replicas",
        "max_replicas",
        "target_in_flight",
        "scale_to_zero_after",
        "startup_timeout",
        "canary_percent",
        "env",
        "secret_env",
        "secret_names",
        "team_secrets",
    )

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "number"], name="deployments_revision_number_once"
            ),
            models.CheckConstraint(
                condition=models.Q(min_replicas__lte=models.F("max_replicas")),
                name="deployments_revision_min_le_max",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.deployment} r{self.number}"


class Replica(models.Model):
    """One workload of one revision on a host, start to end."""

    class Status(models.TextChoices):
        PLACING = "placing", "Placing"
        STARTING = "starting", "Starting"
        LOADING = "loading", "Loading the model"
        READY = "ready", "Ready"
        DRAINING = "draining", "Draining"
        STOPPING = "stopping", "Stopping"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"
        LOST = "lost", "Lost"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="replicas")
    revision = models.ForeignKey(Revision, on_delete=models.CASCADE, related_name="replicas")
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
        related_name="replica",
    )
    runtime_state = models.JSONField(default=dict, blank=True)
    # Where the gateway reaches it (http://address:port), once it runs.
    endpoint = models.CharField(max_length=200, blank=True)
    requested_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # stopped (scaled down, retired, deleted), failed, lost, spend_cap, plan_limit.
    exit_reason = models.CharField(max_length=16, blank=True)
    progressed_at = models.DateTimeField(auto_now_add=True)
    start_attempts = models.PositiveSmallIntegerField(default=0)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-requested_at", "-pk"]
        indexes = [
            models.Index(fields=["deployment", "status"]),
            models.Index(fields=["status", "ended_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.deployment} replica {self.pk}"

    @property
    def workload(self) -> str:
        """Its workload's name on its host, and its placement's."""
        return f"dp-{self.pk}"


# A replica in one of these holds (or waits for) resources.
ACTIVE_REPLICA_STATUSES = frozenset(
    {
        Replica.Status.PLACING,
        Replica.Status.STARTING,
        Replica.Status.LOADING,
        Replica.Status.READY,
        Replica.Status.DRAINING,
        Replica.Status.STOPPING,
    }
)


class DeploymentKey(models.Model):
    """A key for one protected deployment (only its hash is kept)."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="keys")
    name = models.CharField(max_length=80)
    key_hash = models.CharField(max_length=64, unique=True)
    display_prefix = models.CharField(max_length=16)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix}…)"


class DeploymentEvent(models.Model):
    """What happened to a deployment, in words: a revision made, ready, rolled back; a
    replica started, lost, replaced; scaled up, down, to zero."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="events")
    revision = models.ForeignKey(
        Revision, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    replica = models.ForeignKey(
        Replica, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=32)
    message = models.CharField(max_length=1000)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.deployment}: {self.kind}"


class MetricWindow(models.Model):
    """What one web process's gateway counted for one revision in one second."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="+")
    revision = models.ForeignKey(Revision, on_delete=models.CASCADE, related_name="+")
    # The whole second it covers, and who counted it.
    second = models.DateTimeField()
    process = models.CharField(max_length=64)
    requests = models.PositiveIntegerField(default=0)
    status_2xx = models.PositiveIntegerField(default=0)
    status_3xx = models.PositiveIntegerField(default=0)
    status_4xx = models.PositiveIntegerField(default=0)
    status_5xx = models.PositiveIntegerField(default=0)
    # Latency counts per bucket (apps.deployments.metrics.LATENCY_BUCKETS_MS).
    latency = models.JSONField(default=list)
    latency_sum_ms = models.FloatField(default=0.0)
    # Requests in flight when the second ended, and the most during it.
    in_flight = models.PositiveIntegerField(default=0)
    in_flight_max = models.PositiveIntegerField(default=0)
    # Of ``in_flight``, per replica: {"<replica id>": requests in flight when the second
    # ended} (replicas with none left out); the drain reads it (metrics.in_flight_replicas).
    in_flight_replicas = models.JSONField(default=dict)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["revision", "second", "process"], name="deployments_metric_once"
            ),
        ]
        indexes = [models.Index(fields=["deployment", "second"])]

    def __str__(self) -> str:
        return f"{self.revision} at {self.second:%H:%M:%S}"
