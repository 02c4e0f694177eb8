"""The user: a person who logs in with an email address. There is no username."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("A user needs an email address.")
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> User:
        # Email addresses are matched without regard to case, as people type them.
        return self.get(email__iexact=username)


class User(AbstractBaseUser, PermissionsMixin):  # type: ignore[django-manager-missing]
    email = models.EmailField("email address", max_length=254, unique=True)
    name = models.CharField("full name", max_length=150, blank=True)
    is_staff = models.BooleanField(
        "staff status",
        default=False,
        help_text="Can log in to the admin site.",
    )
    is_active = models.BooleanField(
        "active",
        default=True,
        help_text="Unset this instead of deleting the account.",
    )
    date_joined = models.DateTimeField("date joined", default=timezone.now)

    objects: ClassVar[UserManager] = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        verbose_name = "user"
        verbose_name_plural = "users"
        constraints = [
            # unique=True above is case-sensitive; two accounts must not differ
            # only in the case of their address.
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = type(self).objects.normalize_email(self.email)

    @property
    def display_name(self) -> str:
        return self.name or self.email.split("@", 1)[0]

    @property
    def initials(self) -> str:
        parts = self.name.split() if self.name else [self.email]
        return "".join(p[0] for p in parts[:2]).upper()

    def get_full_name(self) -> str:
        return self.name

    def get_short_name(self) -> str:
        return self.display_name


TOKEN_PREFIX = "lat_"
# A whole token as it may appear in a log line (the prefix and 40 base62 characters).
TOKEN_PATTERN = r"lat_[A-Za-z0-9]{40}"
# The areas the API checks (each API view names its ``token_area``): no scope for a feature
# that has no API yet, so a token never promises what nothing serves.
TOKEN_AREAS = ("teams", "notebooks", "datasets", "models", "deployments", "jobs", "billing")
# Beyond read and write: calling a protected deployment's endpoint (apps.deployments.gateway),
# which neither reading nor changing deployments implies.
INVOKE_SCOPE = "deployments:invoke"
TOKEN_SCOPES = (
    *(f"{area}:{level}" for area in TOKEN_AREAS for level in ("read", "write")),
    INVOKE_SCOPE,
)


class PersonalAccessToken(models.Model):
    """An API token a person makes for scripts and the CLI. Only its hash is stored.

    It acts as its user, narrowed by ``scopes`` (read or write per area) and,
    when ``team`` is set, to that one team. It never does more than the user's
    role in a team allows at the moment of each request.

    A *workload token* (``workload`` set) is one the platform made for a notebook session or
    a job attempt, injected into its container (apps.accounts.workload): limited to the
    team, revoked when the workload ends. Its person sees it apart from the tokens they made.
    """

    user = models.ForeignKey(
        "accounts.User",
        on_delete=models.CASCADE,
        related_name="api_tokens",
    )
    name = models.CharField(max_length=100)
    # SHA-256 of the whole token: tokens carry 238 bits of randomness, so a fast
    # hash is enough, and it lets each request find its token by index.
    token_hash = models.CharField(max_length=64, unique=True)
    # The first characters, shown so a person can tell their tokens apart.
    display_prefix = models.CharField(max_length=16)
    scopes = models.JSONField(default=list)
    team = models.ForeignKey(
        "teams.Team",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The workload it was made for ("nb-<notebook>-s<session>", "jb-<attempt>"); empty for a
    # token the person made.
    workload = models.CharField(max_length=40, blank=True, default="", db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.display_prefix}…)"

    @property
    def is_workload(self) -> bool:
        return bool(self.workload)

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    def allows(self, area: str, *, write: bool) -> bool:
        """True when the scopes cover ``area`` (write implies read)."""
        if f"{area}:write" in self.scopes:
            return True
        return not write and f"{area}:read" in self.scopes
