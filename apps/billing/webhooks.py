"""Stripe's webhook deliveries, received in the web request: verified, stored once by id.

``event_receive`` verifies the signature on the raw body, stores the event (a repeat of a
known id changes nothing) and queues ``billing.process_event`` on commit, which applies it
in the worker by refetching its object (apps.billing.events).
"""

from __future__ import annotations

import json

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction

from apps.billing.events import HANDLED
from apps.billing.models import StripeEvent
from apps.billing.tasks import process_event

TOLERANCE_SECONDS = 300  # Stripe's own default


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
            transaction.on_commit(lambda: process_event.delay(known.pk))
        return None
    if outcome == StripeEvent.Outcome.PENDING:
        transaction.on_commit(lambda: process_event.delay(row.pk))
    return row
