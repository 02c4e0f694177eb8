"""Stored Stripe events, applied by refetching: the worker's half of Stripe's webhooks.

An event arrives and is stored once by id in the web request (apps.billing.webhooks), which
queues ``billing.process_event``. ``event_process`` runs in the worker: it reads only the
event's type and object id, fetches that object from Stripe and stores what Stripe holds
now. Duplicates and out-of-order delivery therefore end in the same state.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.billing import services, stripe_api
from apps.billing.entitlements import grace_ends
from apps.billing.models import StripeEvent, Subscription
from apps.billing.notify import billing_mail
from apps.core.tenancy import team_scope

logger = logging.getLogger(__name__)

HANDLED = frozenset(
    {
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
        "invoice.paid",
        "invoice.payment_failed",
    },
)
# Tries over about three days (see events_retry), then it waits for a person.
MAX_ATTEMPTS = 12
# A failed event is tried again by the sweep, not at once: Stripe may be down a moment.
RETRY_AFTER_SECONDS = 60


def event_process(event_pk: int) -> None:
    """Apply one stored event by refetching its object. Does nothing a second time."""
    with transaction.atomic():
        row = StripeEvent.objects.select_for_update().filter(pk=event_pk).first()
        if row is None or row.outcome in {
            StripeEvent.Outcome.PROCESSED,
            StripeEvent.Outcome.IGNORED,
        }:
            return
        row.attempts += 1
        try:
            _apply(row.type, row.payload["data"]["object"])
        except Exception as exc:
            logger.warning("Stripe event %s (%s) failed: %s", row.stripe_id, row.type, exc)
            row.outcome = StripeEvent.Outcome.FAILED
            row.error = f"{type(exc).__name__}: {exc}"[:2000]
        else:
            row.outcome = StripeEvent.Outcome.PROCESSED
            row.error = ""
            row.processed_at = timezone.now()
        row.save(update_fields=["outcome", "error", "attempts", "processed_at"])


def events_retry(*, now: datetime | None = None) -> int:
    """Apply again the events that failed, or were never applied (Stripe down a while,
    say), backing off: the n-th try waits until 2**n minutes after the event arrived.
    Returns how many were tried."""
    now = now or timezone.now()
    waiting = StripeEvent.objects.filter(
        outcome__in=[StripeEvent.Outcome.PENDING, StripeEvent.Outcome.FAILED],
        attempts__lt=MAX_ATTEMPTS,
        received_at__lt=now - timedelta(seconds=RETRY_AFTER_SECONDS),
    ).values_list("pk", "attempts", "received_at")
    count = 0
    for pk, attempts, received_at in list(waiting):
        if now - received_at < timedelta(seconds=RETRY_AFTER_SECONDS * 2**attempts):
            continue
        event_process(pk)
        count += 1
    return count


def _apply(kind: str, obj: dict[str, Any]) -> None:
    client = services._stripe()
    if kind == "checkout.session.completed":
        session = client.v1.checkout.sessions.retrieve(obj["id"])
        subscription = stripe_api.object_id(session.get("subscription"))
        if subscription:
            services.subscription_sync(subscription)
    elif kind.startswith("customer.subscription."):
        services.subscription_sync(obj["id"])
    elif kind in {"invoice.paid", "invoice.payment_failed"}:
        invoice = client.v1.invoices.retrieve(obj["id"])
        subscription_id = stripe_api.invoice_subscription_id(invoice)
        if not subscription_id:
            return  # a one-off invoice: nothing for plans
        row = services.subscription_sync(subscription_id)
        if row is not None and kind == "invoice.payment_failed":
            _payment_failed_mail(row, invoice)


def _payment_failed_mail(subscription: Subscription, invoice: Any) -> None:
    team = subscription.team
    ends = grace_ends(subscription)
    when = f" by {ends:%d %B %Y}" if ends else ""
    amount = (invoice.get("amount_due") or 0) / 100
    plan = subscription.plan.name if subscription.plan else "paid"
    with team_scope(team):
        billing_mail(
            team,
            subject=f"Payment failed for {team.name}",
            body=(
                f"Stripe could not collect ${amount:.2f} for {team.name}'s {plan} plan.\n\n"
                f"Update the payment method{when}, or the team moves to the Free plan and "
                "its notebooks on paid machines stop starting."
            ),
        )
