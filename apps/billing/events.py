"""Stripe webhooks: stored once by event id when they arrive, applied later by refetching.

``event_receive`` runs in the web request: it verifies the signature on the raw
body, stores the event (a repeat of a known id changes nothing) and queues
``billing.process_event`` on commit. ``event_process`` runs in the worker: it
reads only the event's type and object id, fetches that object from Stripe and
stores what Stripe holds now. Duplicates and out-of-order delivery therefore end
in the same state.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
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
TOLERANCE_SECONDS = 300  # Stripe's own default
# A failed event is tried again by the sweep, not at once: Stripe may be down a moment.
RETRY_AFTER_SECONDS = 60


class WebhookRejectedError(Exception):
    """The request is not a genuine, current Stripe event. Nothing was stored."""


def event_receive(payload: bytes, signature: str) -> StripeEvent | None:
    """Verify and store one delivery; return the new row, or None if the id was known."""
    secret = settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise WebhookRejectedError("No webhook signing secret is configured.")
    try:
        # The signature over the raw bytes, and its timestamp: a replay after 5 minutes fails.
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8"), signature, secret, tolerance=TOLERANCE_SECONDS
        )
        event = json.loads(payload)
    except (stripe.SignatureVerificationError, UnicodeDecodeError, ValueError) as exc:
        raise WebhookRejectedError(str(exc)) from exc
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise WebhookRejectedError("The payload is not a Stripe event.")
    outcome = StripeEvent.Outcome.PENDING
    if event.get("type") not in HANDLED:
        outcome = StripeEvent.Outcome.IGNORED
    try:
        with transaction.atomic():
            row = StripeEvent.objects.create(
                stripe_id=event["id"],
                type=str(event.get("type", ""))[:80],
                livemode=bool(event.get("livemode")),
                payload=event,
                outcome=outcome,
            )
    except IntegrityError:
        # Delivered before. If applying it failed then, Stripe's redelivery is a good
        # moment to try again; otherwise there is nothing to do.
        known = StripeEvent.objects.filter(stripe_id=event["id"]).first()
        if known is not None and known.outcome == StripeEvent.Outcome.FAILED:
            transaction.on_commit(lambda: _queue(known.pk))
        return None
    if outcome == StripeEvent.Outcome.PENDING:
        transaction.on_commit(lambda: _queue(row.pk))
    return row


def _queue(event_pk: int) -> None:
    from apps.billing.tasks import process_event

    process_event.delay(event_pk)


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
