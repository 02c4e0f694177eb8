"""Machine types (the catalogue), hosts, their GPUs, and the allocation ledger.

These are platform resources, shared by every team: a placement names the
team it serves, but hosts and GPUs belong to whoever runs this Lattice.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class MachineType(models.Model):
    """What a person picks when starting a notebook: a size, and a GPU model and count."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    vcpus = models.PositiveSmallIntegerField()
    memory_gib = models.PositiveIntegerField()
    disk_gib = models.PositiveIntegerField()
    gpu_model = models.CharField(
        max_length=80,
        blank=True,
        help_text='As NVML names it, e.g. "NVIDIA H100 80GB HBM3". Blank for CPU machines.',
    )
    gpu_count = models.PositiveSmallIntegerField(default=0)
    hourly_price = models.DecimalField(max_digits=8, decimal_places=4, help_text="USD per hour")
    active = models.BooleanField(default=True, help_text="Offered to people when starting.")
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "hourly_price"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(gpu_count=0, gpu_model="")
                    | models.Q(gpu_count__gt=0) & ~models.Q(gpu_model="")
                ),
                name="machines_type_gpu_model_iff_gpus",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0


def host_queue(name: str) -> str:
    """The Celery queue the agent of host ``name`` consumes."""
    return f"host.{name}"


class Host(models.Model):
    """A machine that runs containers, served by one agent on queue ``host.<name>``."""

    class Status(models.TextChoices):
        READY = "ready", "Ready"
        DRAINING = "draining", "Draining"
        OFFLINE = "offline", "Offline"

    name = models.SlugField(max_length=63, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OFFLINE)
    # An admin's wish, kept apart from status: a draining host that goes offline
    # and comes back is still draining.
    drain_requested = models.BooleanField(default=False)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    cpu_count = models.PositiveIntegerField(default=0)
    memory_bytes = models.PositiveBigIntegerField(default=0)
    disk_bytes = models.PositiveBigIntegerField(default=0)
    labels = models.JSONField(default=dict, blank=True)
    driver_version = models.CharField(max_length=40, blank=True)
    runtime = models.CharField(max_length=20, blank=True, help_text="docker or process")
    # The address its agent publishes workloads on (its LATTICE_WORKLOAD_ADDRESS): a reported
    # endpoint anywhere else is refused. Set by an admin with the join token, never by the host.
    workload_address = models.GenericIPAddressField(default="127.0.0.1")
    # The key its agent signs every message with (apps.machines.inbox), set when it joins; empty:
    # nothing it sends is believed (a new host before its join, or after its key was revoked).
    signing_key = models.CharField(max_length=64, blank=True, editable=False)
    # What the agent last reported running, by workload name, and when.
    reported_workloads = models.JSONField(default=list, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def queue(self) -> str:
        return host_queue(self.name)


class GPUDevice(models.Model):
    """One GPU, or one MIG instance of a GPU, on a host. Allocated by UUID, never "any GPU"."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="gpus")
    uuid = models.CharField(max_length=80, unique=True)
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=80)
    memory_bytes = models.PositiveBigIntegerField()
    # Set for a MIG instance: the UUID of the physical GPU it is carved from.
    parent_uuid = models.CharField(max_length=80, blank=True)
    # A GPU split into MIG instances is handed out only as those instances.
    mig_enabled = models.BooleanField(default=False)
    present = models.BooleanField(
        default=True,
        help_text="False once the latest inventory no longer lists it.",
    )

    class Meta:
        ordering = ["host", "index", "uuid"]
        # The scheduler reads free GPUs of one model host by host, in host order.
        indexes = [models.Index(fields=["name", "host"], name="machines_gpu_model_host")]

    def __str__(self) -> str:
        return f"{self.host}:{self.index} {self.name}"


class HostJoinToken(models.Model):
    """Lets one new host register itself, under the name it was made for. Only the hash is kept."""

    token_hash = models.CharField(max_length=64, unique=True)
    note = models.CharField(max_length=100, blank=True)
    # The only name the host may join as: its broker user is made for that name with the token.
    host_name = models.CharField(max_length=63, blank=True)
    workload_address = models.GenericIPAddressField(default="127.0.0.1")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    host = models.ForeignKey(
        Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return self.note or f"join token {self.pk}"


class BrokerUser(models.Model):
    """A host agent's Redis user as the control plane made it (apps.machines.broker): the
    host's name and the SHA-256 of its password, which is what Redis keeps of it too
    (``ACL SETUSER <user> #<sha256>``). Redis does not keep ACL users across a restart
    unless it has an ACL file, so the control plane makes missing ones again from here
    (``broker_users_restore``); the password itself is never stored."""

    host_name = models.CharField(max_length=63, unique=True)
    password_sha256 = models.CharField(max_length=64)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"broker user of {self.host_name}"


class Placement(models.Model):
    """A workload placed on a host: its CPU and memory, and (through GPUAllocation) its GPUs."""

    host = models.ForeignKey(Host, on_delete=models.PROTECT, related_name="placements")
    machine_type = models.ForeignKey(MachineType, on_delete=models.PROTECT, related_name="+")
    team = models.ForeignKey(
        "teams.Team",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # What it serves, e.g. "notebook-session:42"; the notebooks issue links its sessions.
    workload = models.CharField(max_length=100)
    vcpus = models.PositiveSmallIntegerField()
    memory_gib = models.PositiveIntegerField()
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)
    # Why it ended: "released" (stopped normally), "lost" (the container vanished
    # or the host went silent; released_at is then the last time it was seen).
    end_reason = models.CharField(max_length=16, blank=True)
    # Reports in a row that did not show the workload running, and the last of them:
    # it is lost only after two, so one late or partial report does not kill it.
    missed_reports = models.PositiveSmallIntegerField(default=0)
    last_missed_report_at = models.DateTimeField(null=True, blank=True)
    # The last report that showed it running: a lost workload ends here, not later.
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["host", "active"])]

    def __str__(self) -> str:
        return f"{self.workload} on {self.host}"


class GPUAllocation(models.Model):
    """One GPU held by one placement. The constraint is the ledger's guarantee."""

    placement = models.ForeignKey(
        Placement, on_delete=models.CASCADE, related_name="gpu_allocations"
    )
    gpu = models.ForeignKey(GPUDevice, on_delete=models.PROTECT, related_name="allocations")
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["gpu"],
                condition=models.Q(active=True),
                name="machines_one_active_allocation_per_gpu",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.gpu.uuid} for {self.placement}"


class PlacementRequest(models.Model):
    """A workload waiting for room, first come first served per machine type."""

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting"
        PLACED = "placed", "Placed"
        CANCELLED = "cancelled", "Cancelled"

    machine_type = models.ForeignKey(MachineType, on_delete=models.PROTECT, related_name="+")
    team = models.ForeignKey(
        "teams.Team",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    workload = models.CharField(max_length=100, unique=True)
    # Only this host will do (a job run from a notebook's files, which are on that host).
    host = models.ForeignKey(
        Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Tried first when it has room, else any other host (a notebook's volume host: its files
    # are there; apps.notebooks.volumes). Unlike ``host``, never waits for that host.
    prefer_host = models.ForeignKey(
        Host, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.WAITING)
    placement = models.OneToOneField(
        Placement,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="request",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.workload} waiting for {self.machine_type}"


class WarmPool(models.Model):
    """Warm containers kept ready on one host for one (image, machine type): a notebook start
    of that image and type takes one (apps.machines.pool) instead of starting a container.

    Its containers belong to no team and are never billed; each holds a placement (CPU,
    memory and, only with ``hold_gpus``, the type's GPUs) from the ledger like a workload."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="warm_pools")
    machine_type = models.ForeignKey(MachineType, on_delete=models.CASCADE, related_name="+")
    image = models.CharField(
        max_length=300, help_text="The image a session of this pool runs, exactly as it names it."
    )
    size = models.PositiveSmallIntegerField(
        default=0, help_text="How many ready containers to keep. 0 empties the pool."
    )
    hold_gpus = models.BooleanField(
        default=False,
        help_text=(
            "A GPU machine type's pool holds its GPUs while it waits (they show as reserved, "
            "not free). Without it a GPU type's pool keeps no containers."
        ),
    )

    # The host's last word when a container of this pool could not be made: no new one is
    # asked for within LATTICE_POOL_FILL_TIMEOUT of it (a host that cannot keep warm
    # containers is not asked again every pass).
    failed_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=300, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["host", "machine_type", "image"], name="machines_one_pool_per_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.size} x {self.machine_type} {self.image} on {self.host}"

    @property
    def target(self) -> int:
        """How many containers it keeps: none for a GPU type unless it may hold GPUs."""
        if self.machine_type.is_gpu and not self.hold_gpus:
            return 0
        return self.size


class PoolSlot(models.Model):
    """One warm container the control plane asked a host for, with its placement (its
    reservation: workload = ``name``). Only a slot recorded here is believed ready when the
    host says so (apps.machines.pool)."""

    class Status(models.TextChoices):
        FILLING = "filling", "Filling"
        READY = "ready", "Ready"
        CLAIMED = "claimed", "Claimed"

    pool = models.ForeignKey(
        WarmPool, null=True, blank=True, on_delete=models.SET_NULL, related_name="slots"
    )
    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=63, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.FILLING)
    placement = models.OneToOneField(
        Placement, null=True, blank=True, on_delete=models.SET_NULL, related_name="pool_slot"
    )
    # The pool's Jupyter token (replaced by the session's at claim), and the runtime's state.
    token = models.CharField(max_length=64, editable=False)
    state = models.JSONField(default=dict, blank=True)
    # What the slot was filled with (a pool whose type, image or hold_gpus changed drains
    # its old slots; a start takes only a slot filled for its own type and image).
    machine_type = models.ForeignKey(
        MachineType, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    image = models.CharField(max_length=300, blank=True)
    hold_gpus = models.BooleanField(default=False)
    # Claimed: by which workload, when (kept a while, so a report taken before the claim does
    # not take the container for an orphan).
    claimed_by = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["status", "host"])]

    def __str__(self) -> str:
        return self.name
