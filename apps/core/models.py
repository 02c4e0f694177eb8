"""Models shared by every app: the audit log."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models

from apps.core.tenancy import TeamManager, TeamScopedManager


class AuditEntry(models.Model):
    """One change made in a team, written by the service that made it."""

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Kept as text too: the entry must still read right after the actor is deleted.
    actor_email = models.EmailField(blank=True)
    action = models.CharField(max_length=64)
    target = models.CharField(max_length=255, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_email} {self.action} {self.target}"
