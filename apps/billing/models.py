"""Plans and what they allow, each team's Stripe customer and subscription, the
Stripe events received, machine prices over time, and the usage sent to Stripe.

Money is derived, not accumulated: what a team owes is computed from notebook
sessions, deployment replicas and the machine prices in force while they ran (apps.billing.usage).
The rows here only record what Stripe told us and what we told Stripe.
"""

from __future__ import annotations

from typing import ClassVar

from django.db import models

from apps.core.tenancy import TeamManager, TeamScopedManager


class Plan(models.Model):
    """What a team pays for and what it may use. Edited in the admin; blank limits mean none."""

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=80)
    description = models.CharField(max_length=300, blank=True)
    monthly_price = models.DecimalField(
        max_digits=8, decimal_places=2, default=0, help_text="USD a month, as shown to people."
    )
    stripe_price_id = models.CharField(
        max_length=120,
        blank=True,
        help_text="The Stripe recurring price of the subscription. Blank for the free plan.",
    )
    machine_types = models.ManyToManyField(
        "machines.MachineType", blank=True, related_name="plans", help_text="Machines it may start."
    )
    max_running_notebooks = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Notebooks running at once. Blank: no limit."
    )
    storage_gib = models.PositiveIntegerField(
        null=True, blank=True, help_text="Dataset and model storage. Blank: no limit."
    )
    seats = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Members, pending invitations included. Blank: no limit."
    )
    max_idle_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="The longest idle shutdown allowed. Blank: any, including never.",
    )
    max_session_hours = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="A session is stopped after this long. Blank: no cap."
    )
    private_datasets = models.BooleanField(default=False)
    max_deployments = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Deployments the team may have. Blank: no limit."
    )
    max_replicas = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Replicas one deployment may run at once (its maximum). Blank: no limit.",
    )
    is_default = models.BooleanField(
        default=False, help_text="The plan of every team without a paid subscription."
    )
    active = models.BooleanField(default=True, help_text="Offered on the billing page.")
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "monthly_price"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="billing_one_default_plan",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class MachinePrice(models.Model):
    """A machine type's hourly price from ``effective_from`` until the next row.

    Usage is priced from these rows, so a price change bills time before it at
    the old price and time after it at the new one.
    """

    machine_type = models.ForeignKey(
        "machines.MachineType", on_delete=models.CASCADE, related_name="prices"
    )
    hourly_price = models.DecimalField(max_digits=8, decimal_places=4, help_text="USD per hour")
    effective_from = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["machine_type", "effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["machine_type", "effective_from"], name="billing_price_once_per_instant"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.machine_type} ${self.hourly_price}/h from {self.effective_from:%Y-%m-%d}"


class BillingAccount(models.Model):
    """A team as Stripe's customer, and the team's spend cap. One per team, made on first use."""

    team = models.OneToOneField("teams.Team", on_delete=models.CASCADE, related_name="+")
    stripe_customer_id = models.CharField(max_length=120, blank=True)
    spend_cap = models.DecimalField(
        max_digits=10,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="USD of usage a billing period. Blank: no cap.",
    )
    stop_at_cap = models.BooleanField(
        default=False, help_text="At the cap, stop running machines too (not only new starts)."
    )
    # The cap alerts already sent: the period they belong to and the highest percentage.
    cap_alert_period = models.DateTimeField(null=True, blank=True)
    cap_alert_percent = models.PositiveSmallIntegerField(default=0)
    # Usage is reported to Stripe from here on (the first subscription's period start).
    usage_since = models.DateTimeField(null=True, blank=True)
    # The last comparison of what we sent Stripe with what Stripe's meter holds.
    usage_checked_at = models.DateTimeField(null=True, blank=True)
    usage_sent_cents = models.PositiveBigIntegerField(default=0)
    usage_stripe_cents = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_customer_id"],
                condition=~models.Q(stripe_customer_id=""),
                name="billing_one_account_per_customer",
            ),
        ]

    def __str__(self) -> str:
        return f"Billing of {self.team}"


class Subscription(models.Model):
    """A Stripe subscription as last fetched from Stripe: never edited from anywhere else."""

    class Status(models.TextChoices):
        INCOMPLETE = "incomplete", "Incomplete"
        INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete, expired"
        TRIALING = "trialing", "Trialing"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        CANCELED = "canceled", "Canceled"
        UNPAID = "unpaid", "Unpaid"
        PAUSED = "paused", "Paused"

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    stripe_id = models.CharField(max_length=120, unique=True)
    stripe_customer_id = models.CharField(max_length=120)
    plan = models.ForeignKey(
        Plan,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The plan whose Stripe price the subscription holds; blank if none matches.",
    )
    status = models.CharField(max_length=20, choices=Status.choices)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    ended_at = models.DateTimeField(null=True, blank=True)
    # When Lattice first saw it past due: the grace period counts from here.
    past_due_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.stripe_id} ({self.status})"


class StripeEvent(models.Model):
    """A webhook event, stored once by its Stripe id before anything is done with it."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"

    stripe_id = models.CharField(max_length=120, unique=True)
    type = models.CharField(max_length=80)
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.stripe_id} {self.type}"


class UsageReport(models.Model):
    """Usage told to Stripe as one meter event, in cents. Written before it is sent, so an
    interrupted send is retried with the same identifier and Stripe counts it once.

    The reports of a team cover consecutive spans of time, each ending at
    ``covers_until``; the event is dated a second before that, inside its period.
    """

    team = models.ForeignKey("teams.Team", on_delete=models.CASCADE, related_name="+")
    identifier = models.CharField(max_length=120, unique=True)
    stripe_customer_id = models.CharField(max_length=120)
    # The start of the billing period the event is dated in (for people reading it).
    period_start = models.DateTimeField()
    # The usage up to this instant is covered by this report and those before it.
    covers_until = models.DateTimeField()
    cents = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[TeamManager] = TeamScopedManager()

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.identifier}: {self.cents}c"
