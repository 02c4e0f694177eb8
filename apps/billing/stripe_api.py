"""The one place Lattice makes a ``stripe.StripeClient``, and reads fields out of
Stripe objects whose place moved between API versions."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import stripe
from django.conf import settings


class StripeNotConfiguredError(Exception):
    pass


# Connect and read timeouts (s): Stripe's calls are made while a person waits on a page (the
# billing page reads the invoices), so a Stripe that hangs must not hold it for long.
TIMEOUT = (5.0, 20.0)


@functools.cache
def _client(key: str, base: str) -> stripe.StripeClient:
    # Network errors are retried by stripe-python with the same idempotency key.
    http_client = stripe.new_default_http_client(timeout=TIMEOUT)
    if base:
        return stripe.StripeClient(
            key, base_addresses={"api": base}, max_network_retries=2, http_client=http_client
        )
    return stripe.StripeClient(key, max_network_retries=2, http_client=http_client)


def client() -> stripe.StripeClient:
    """Stripe's client, or the local test double's when STRIPE_API_BASE names one."""
    if not settings.STRIPE_SECRET_KEY:
        raise StripeNotConfiguredError(
            "Stripe is not configured on this Lattice (STRIPE_SECRET_KEY is empty)."
        )
    return _client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE)


def hosted_page_origins() -> list[str]:
    """Where the billing page's forms may send the browser: Stripe's Checkout and portal,
    or the test double's stand-ins (they live at its API address)."""
    origins = ["https://checkout.stripe.com", "https://billing.stripe.com"]
    if settings.STRIPE_API_BASE:
        parts = urlsplit(settings.STRIPE_API_BASE)
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return origins


def moment(timestamp: int | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC)


def subscription_period(subscription: Any) -> tuple[datetime | None, datetime | None]:
    """The current period: on the items since API 2025-03-31, on the subscription before."""
    items = subscription["items"]["data"] if subscription.get("items") else []
    for item in items:
        if item.get("current_period_start"):
            return moment(item["current_period_start"]), moment(item["current_period_end"])
    return (
        moment(subscription.get("current_period_start")),
        moment(subscription.get("current_period_end")),
    )


def subscription_price_ids(subscription: Any) -> list[str]:
    items = subscription["items"]["data"] if subscription.get("items") else []
    return [item["price"]["id"] for item in items if item.get("price")]


def invoice_subscription_id(invoice: Any) -> str | None:
    """An invoice's subscription: under parent.subscription_details since API 2025-03-31."""
    parent = invoice.get("parent") or {}
    details = parent.get("subscription_details") or {}
    found = details.get("subscription") or invoice.get("subscription")
    if isinstance(found, str):
        return found
    return found["id"] if found else None


def object_id(value: Any) -> str | None:
    """A reference that may be an id or an expanded object."""
    if value is None or isinstance(value, str):
        return value
    return str(value["id"])
