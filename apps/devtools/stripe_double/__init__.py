"""A local Stripe API test double: Stripe's wire protocol, state and signed webhooks.

Tests and offline development point the real client at it instead of Stripe::

    double = StripeDouble(deliver=handle_webhook).start()
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": double.url})

It serves the v1 calls Lattice makes (customers, Checkout, the billing portal,
subscriptions, invoices, prices, products, meters and meter events), hosted stand-ins
for the Checkout, portal and invoice pages, and scenario steps (``complete_checkout``,
``fail_payment``...) that change its state like Stripe would and deliver the matching
events. Its objects are Stripe's own example objects with their fields overridden.
"""

from __future__ import annotations

from .errors import StripeDoubleError
from .objects import API_VERSION
from .server import StripeDouble

__all__ = ["API_VERSION", "StripeDouble", "StripeDoubleError"]
