"""The Stripe double's objects keep the shape of Stripe's own example objects.

Every object it serves is built from ``fixtures.json`` (Stripe's examples): it must carry
exactly the example's fields, in test mode, with none of the examples' sample values
(1234567890 timestamps, ``obj_123`` ids) left in. No database is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
import stripe

from apps.devtools.stripe_double import StripeDouble
from apps.devtools.stripe_double.objects import fixture

if TYPE_CHECKING:
    from collections.abc import Iterator

# Where the example of each object type is, when it is not a fixture of its own.
EXAMPLES: dict[str, tuple[Any, ...]] = {
    "line_item": ("invoice", "lines", "data", 0),
    "plan": ("subscription_item", "plan"),
}


def _samples(value: Any) -> list[Any]:
    """The examples' sample values found anywhere in ``value``."""
    if isinstance(value, dict):
        return [found for child in value.values() for found in _samples(child)]
    if isinstance(value, list):
        return [found for child in value for found in _samples(child)]
    return [value] if value in {1234567890, "obj_123"} else []


def _stripe_objects(value: Any) -> Iterator[dict[str, Any]]:
    """Every Stripe object (a dict with an ``object`` type other than list) in ``value``."""
    if isinstance(value, dict):
        if isinstance(value.get("object"), str) and value["object"] != "list":
            yield value
        for child in value.values():
            yield from _stripe_objects(child)
    elif isinstance(value, list):
        for child in value:
            yield from _stripe_objects(child)


@pytest.fixture
def served() -> Iterator[list[Any]]:
    """What a double served in one story: checkout, a failed renewal, the portal, usage."""
    with StripeDouble() as double:
        double.add_product("prod_team", "Team")
        double.add_meter("mtr_compute", event_name="compute")
        double.add_price("price_team", product="prod_team", unit_amount=2000)
        double.add_price(
            "price_compute",
            product="prod_team",
            unit_amount=1,
            usage_type="metered",
            meter="mtr_compute",
        )
        client = stripe.StripeClient(
            "sk_test_x", base_addresses={"api": double.url}, max_network_retries=0
        )
        session = client.v1.checkout.sessions.create(
            params={
                "mode": "subscription",
                "customer_email": "alice@example.com",
                "line_items": [{"price": "price_team", "quantity": 2}, {"price": "price_compute"}],
            }
        )
        subscription_id = double.complete_checkout(session.id)
        assert subscription_id is not None
        double.fail_payment(subscription_id)
        double.draft_invoice(subscription_id)
        customer = double.subscriptions[subscription_id]["customer"]
        client.v1.billing_portal.sessions.create(params={"customer": customer})
        client.v1.billing.meter_events.create(
            params={
                "event_name": "compute",
                "payload": {"stripe_customer_id": customer, "value": "3"},
            }
        )
        key = {"Authorization": "Bearer sk_test_x"}
        with httpx.Client(base_url=double.url, headers=key) as wire:
            listed = [
                wire.get(f"/v1/checkout/sessions/{session.id}/line_items").json(),
                wire.get(
                    "/v1/billing/meters/mtr_compute/event_summaries",
                    params={"customer": customer, "start_time": 1, "end_time": 2_000_000_000},
                ).json(),
            ]
        yield [
            *double.customers.values(),
            *double.checkout_sessions.values(),
            *double.subscriptions.values(),
            *double.invoices.values(),
            *double.prices.values(),
            *double.products.values(),
            *double.meters.values(),
            *double.meter_events,
            *double.portal_sessions.values(),
            *double.events,
            *listed,
        ]


def _expected_fields(obj: dict[str, Any]) -> set[str]:
    fields = set(fixture(*EXAMPLES.get(obj["object"], (obj["object"],))))
    if (
        obj["object"] == "subscription_item"
        and obj["price"]["recurring"]["usage_type"] == "metered"
    ):
        fields.remove("quantity")  # Stripe leaves it off metered items
    return fields


def test_every_object_has_exactly_the_fields_of_stripes_example(served: list[Any]) -> None:
    types = set()
    for obj in _stripe_objects(served):
        assert set(obj) == _expected_fields(obj), obj["object"]
        types.add(obj["object"])
    assert types >= {
        "customer",
        "checkout.session",
        "item",
        "subscription",
        "subscription_item",
        "plan",
        "invoice",
        "line_item",
        "price",
        "product",
        "billing_portal.session",
        "billing.meter",
        "billing.meter_event",
        "billing.meter_event_summary",
        "event",
    }


def test_objects_are_test_mode_with_no_sample_values_left(served: list[Any]) -> None:
    for obj in _stripe_objects(served):
        assert obj.get("livemode", False) is False, obj["object"]
    assert _samples(served) == []
