"""Billing writes: checkout and portal sessions, the spend cap, subscriptions as Stripe
holds them, price changes. Webhook events and usage to Stripe are in
apps.billing.webhooks, apps.billing.events and apps.billing.metering.

Subscriptions are only ever written from an object just fetched from Stripe
(``subscription_sync``), so however often and in whatever order events arrive,
the row ends as Stripe's current state.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.billing import holds, stripe_api
from apps.billing.entitlements import (
    GRACE_STATUSES,
    account_locked,
    billing_enabled,
    current_subscription,
)
from apps.billing.models import BillingAccount, MachinePrice, Plan, Subscription
from apps.core.audit import audit_record
from apps.core.errors import ConflictError, PermissionDeniedError, ServiceError
from apps.core.tenancy import team_scope
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from datetime import datetime

    from apps.accounts.models import User
    from apps.machines.models import MachineType
    from apps.teams.models import Team

MAX_SPEND_CAP = Decimal("1000000")


class BillingError(ServiceError):
    """A billing request refused; the message is shown as it is."""


class BillingConflictError(ConflictError, BillingError):
    """Not possible in the current state (409)."""


class BillingPermissionError(PermissionDeniedError, BillingError):
    """The actor's role does not allow this (403)."""


class BillingUnavailableError(BillingError):
    """Stripe is not configured, or did not answer."""

    status_code = 503
    code = "billing_unavailable"


_MANAGERS_ONLY = "Only the team's owners and admins manage its billing."


def _require_enabled() -> None:
    if not billing_enabled():
        raise BillingConflictError("Billing is not enabled on this Lattice.")


def _stripe() -> stripe.StripeClient:
    try:
        return stripe_api.client()
    except stripe_api.StripeNotConfiguredError as exc:
        raise BillingUnavailableError(str(exc)) from exc


def account_for(team: Team) -> BillingAccount:
    account, _ = BillingAccount.objects.for_team(team).get_or_create(team=team)
    return account


def customer_ensure(*, team: Team, actor: User) -> str:
    """The team's Stripe customer id, made at Stripe on first use (once, however often asked)."""
    account = account_for(team)
    if account.stripe_customer_id:
        return account.stripe_customer_id
    try:
        customer = _stripe().v1.customers.create(
            params={
                "name": team.name,
                "email": actor.email,
                "metadata": {"lattice_team": str(team.pk), "lattice_team_slug": team.slug},
            },
            # Two clicks at once make one customer.
            options={"idempotency_key": f"lattice-{settings.LATTICE_INSTALLATION}-cus-{team.pk}"},
        )
    except stripe.StripeError as exc:
        raise BillingUnavailableError(f"Stripe did not answer: {exc.user_message or exc}") from exc
    with transaction.atomic():
        account = BillingAccount.objects.for_team(team).select_for_update().get(pk=account.pk)
        if not account.stripe_customer_id:
            account.stripe_customer_id = customer.id
            account.save(update_fields=["stripe_customer_id"])
    return account.stripe_customer_id


def checkout_start(
    *,
    team: Team,
    actor: User,
    plan: Plan,
    success_url: str,
    cancel_url: str,
) -> str:
    """Open a Stripe Checkout Session for ``plan`` (subscription mode); return its address."""
    require_permission(
        team, actor, "billing.manage", error=BillingPermissionError, message=_MANAGERS_ONLY
    )
    _require_enabled()
    if not plan.active or not plan.stripe_price_id:
        raise BillingError(f"The {plan.name} plan cannot be bought here.", field="plan")
    subscription = current_subscription(team)
    if subscription is not None and subscription.status != Subscription.Status.INCOMPLETE:
        raise BillingConflictError(
            "This team already has a subscription: change plans from Manage billing.",
            field="plan",
        )
    customer = customer_ensure(team=team, actor=actor)
    line_items: list[dict[str, Any]] = [{"price": plan.stripe_price_id, "quantity": 1}]
    if settings.STRIPE_USAGE_PRICE:
        line_items.append({"price": settings.STRIPE_USAGE_PRICE})
    # Typed as Any: stripe's TypedDicts do not take a list built up like line_items.
    params: Any = {
        "mode": "subscription",
        "customer": customer,
        "line_items": line_items,
        "client_reference_id": str(team.pk),
        "metadata": {"lattice_team": str(team.pk), "lattice_plan": plan.slug},
        "subscription_data": {"metadata": {"lattice_team": str(team.pk)}},
        "success_url": success_url,
        "cancel_url": cancel_url,
    }
    try:
        session = _stripe().v1.checkout.sessions.create(params=params)
    except stripe.StripeError as exc:
        raise BillingUnavailableError(f"Stripe did not answer: {exc.user_message or exc}") from exc
    audit_record(team=team, actor=actor, action="billing.checkout_started", target=plan.name)
    return str(session.url)


def portal_open(*, team: Team, actor: User, return_url: str) -> str:
    """Open a Stripe Customer Portal session (payment method, plan, cancellation)."""
    require_permission(
        team, actor, "billing.manage", error=BillingPermissionError, message=_MANAGERS_ONLY
    )
    _require_enabled()
    account = account_for(team)
    if not account.stripe_customer_id:
        raise BillingConflictError("This team has no Stripe customer yet: choose a plan first.")
    try:
        session = _stripe().v1.billing_portal.sessions.create(
            params={"customer": account.stripe_customer_id, "return_url": return_url},
        )
    except stripe.StripeError as exc:
        raise BillingUnavailableError(f"Stripe did not answer: {exc.user_message or exc}") from exc
    audit_record(team=team, actor=actor, action="billing.portal_opened", target=team.name)
    return str(session.url)


@transaction.atomic
def spend_cap_set(
    *,
    team: Team,
    actor: User,
    spend_cap: Decimal | str | None,
    stop_at_cap: bool,
) -> BillingAccount:
    """Set (or clear, with None) the team's spend cap per period; alerts start again."""
    require_permission(
        team, actor, "billing.manage", error=BillingPermissionError, message=_MANAGERS_ONLY
    )
    _require_enabled()
    if spend_cap in (None, ""):
        cap = None
    else:
        try:
            cap = Decimal(str(spend_cap)).quantize(Decimal("0.01"))
        except (InvalidOperation, ValueError) as exc:
            raise BillingError("The cap is an amount in USD, e.g. 250.", field="spend_cap") from exc
        if not cap.is_finite() or not Decimal(0) <= cap <= MAX_SPEND_CAP:
            raise BillingError(
                f"The cap is between $0 and ${MAX_SPEND_CAP:,.0f}.", field="spend_cap"
            )
    account = account_locked(team)
    account.spend_cap = cap
    account.stop_at_cap = bool(stop_at_cap)
    account.cap_alert_percent = 0
    account.cap_alert_period = None
    account.save(
        update_fields=["spend_cap", "stop_at_cap", "cap_alert_percent", "cap_alert_period"]
    )
    # A raised or removed cap lets the deployments it paused run again now, not at the
    # next sweep.
    transaction.on_commit(lambda: holds.cap_changed(team))
    audit_record(
        team=team,
        actor=actor,
        action="billing.spend_cap_changed",
        target=team.name,
        spend_cap=None if cap is None else str(cap),
        stop_at_cap=account.stop_at_cap,
    )
    return account


def _team_for(subscription: Any) -> Team | None:
    """The team a Stripe subscription belongs to: the one whose customer it is, or none.

    Never its metadata: another installation sharing the Stripe account (or anyone who
    can write metadata) could name a team of ours there.
    """
    customer = stripe_api.object_id(subscription.get("customer"))
    if not customer:
        return None
    account = BillingAccount.objects.unscoped().filter(stripe_customer_id=customer).first()
    return account.team if account is not None else None


def subscription_sync(stripe_id: str) -> Subscription | None:
    """Fetch the subscription from Stripe and store it as it is there now.

    Safe to repeat and to call in any order: it never reads the event that led here.
    Returns None when no team owns it.
    """
    fetched = _stripe().v1.subscriptions.retrieve(stripe_id)
    team = _team_for(fetched)
    if team is None:
        return None
    with team_scope(team), transaction.atomic():
        return _subscription_store(team, fetched)


def _subscription_store(team: Team, fetched: Any) -> Subscription:
    # One writer per team at a time: two webhooks about a new subscription would
    # otherwise both insert it.
    account_locked(team)
    prices = stripe_api.subscription_price_ids(fetched)
    plan = Plan.objects.filter(stripe_price_id__in=prices).exclude(stripe_price_id="").first()
    start, end = stripe_api.subscription_period(fetched)
    row = (
        Subscription.objects.for_team(team)
        .select_for_update()
        .filter(stripe_id=fetched["id"])
        .first()
    )
    before = (row.status, row.plan_id) if row else None
    if row is None:
        row = Subscription(team=team, stripe_id=fetched["id"])
    row.stripe_customer_id = stripe_api.object_id(fetched.get("customer")) or ""
    row.plan = plan
    row.status = fetched["status"]
    row.current_period_start = start
    row.current_period_end = end
    row.cancel_at_period_end = bool(fetched.get("cancel_at_period_end"))
    row.ended_at = stripe_api.moment(fetched.get("ended_at"))
    if row.status in GRACE_STATUSES:
        row.past_due_since = row.past_due_since or timezone.now()
    else:
        row.past_due_since = None
    row.save()
    if before != (row.status, row.plan_id):
        audit_record(
            team=team,
            actor=None,
            action="billing.subscription_changed",
            target=plan.name if plan else row.stripe_id,
            status=row.status,
        )
    return row


def checkout_sync(*, team: Team, session_id: str) -> Subscription | None:
    """On return from Checkout: apply its subscription now rather than wait for the webhook.

    The session is fetched from Stripe and must name this team; anything else is ignored.
    """
    if not billing_enabled() or not session_id.startswith("cs_"):
        return None
    try:
        session = _stripe().v1.checkout.sessions.retrieve(session_id)
        if session.get("client_reference_id") != str(team.pk):
            return None
        subscription = stripe_api.object_id(session.get("subscription"))
        return subscription_sync(subscription) if subscription else None
    except (stripe.StripeError, BillingError):
        return None  # the webhook does it when Stripe answers again


@transaction.atomic
def machine_price_set(
    *,
    machine_type: MachineType,
    hourly_price: Decimal,
    effective_from: datetime | None = None,
) -> MachinePrice:
    """Change a machine type's price from ``effective_from`` (now by default) on; the time
    before keeps its old price. Called from the admin."""
    if hourly_price < 0:
        raise BillingError("A price is not negative.", field="hourly_price")
    # Whole seconds: usage is billed by the second.
    effective_from = (effective_from or timezone.now()).replace(microsecond=0)
    row, _ = MachinePrice.objects.update_or_create(
        machine_type=machine_type,
        effective_from=effective_from,
        defaults={"hourly_price": hourly_price},
    )
    latest = (
        MachinePrice.objects.filter(machine_type=machine_type, effective_from__lte=timezone.now())
        .order_by("effective_from")
        .last()
    )
    if latest is not None and latest.hourly_price != machine_type.hourly_price:
        machine_type.hourly_price = latest.hourly_price
        machine_type.save(update_fields=["hourly_price"])
    return row
