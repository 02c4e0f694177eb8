"""The team is Lattice's tenant: notebooks, datasets, deployments and bills belong to one."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from apps.core.tenancy import TeamManager, TeamScopedManager


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


class Team(models.Model):  # type: ignore[django-manager-missing]
    """Not itself tenant-owned: a person reaches a team only through a Membership."""

    name = models.CharField(max_length=80)
    slug = models.SlugField(max_length=60, unique=True)
    personal = models.BooleanField(
        default=False,
        help_text="Made for one user at sign-up; it cannot be left or deleted.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="memberships",
    )
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="teams_membership_unique"),
        ]
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class Invitation(models.Model):
    """An email address asked to join a team with a role, through a signed single-use link."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        DECLINED = "declined", "Declined"
        REVOKED = "revoked", "Revoked"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    # Part of the signed link: a link stops working when the row's nonce changes.
    nonce = models.CharField(max_length=32)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_sent_at = models.DateTimeField()
    send_count = models.PositiveSmallIntegerField(default=1)
    closed_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                "team",
                Lower("email"),
                condition=models.Q(status="pending"),
                name="teams_invitation_one_pending_per_email",
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} to {self.team} ({self.status})"


class TeamSecret(models.Model):
    """A team's secret: a name (an environment variable's) and a value sealed at rest
    (apps.core.crypto). Write-only: no page or API shows the value again. Notebooks, jobs
    and deployments name the secrets they get as environment variables
    (apps.teams.secrets); values found in their logs are masked."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=64)
    sealed = models.BinaryField(editable=False)
    description = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="teams_secret_name_once"),
        ]

    def __str__(self) -> str:
        return f"{self.name} of {self.team}"


class RetiredSecret(models.Model):
    """A value a team's secret held before it was replaced or deleted, sealed like it: a
    workload started with it may still print it, so logs stay masked with it for
    ``apps.teams.secrets.RETIRED_MASK_DAYS``. Never shown, never resolved."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=64)
    sealed = models.BinaryField(editable=False)
    retired_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-retired_at"]

    def __str__(self) -> str:
        return f"{self.name}'s old value of {self.team}"
