"""``manage.py billing_stripe_setup`` against an empty Stripe (the test double, unseeded):
it creates the meter and prices once, writes the plans' price ids, prints what to set,
and turns Stripe's refusals into a readable error."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO
from typing import TYPE_CHECKING, Any

import pytest
from django.core.management import CommandError, call_command

from apps.billing.models import Plan
from apps.devtools.stripe_double import StripeDouble

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.django_db

API_KEY = "sk_test_setup"


@pytest.fixture
def empty_stripe(settings: Any, billing_plans: None) -> Iterator[StripeDouble]:
    double = StripeDouble(webhook_secret="whsec_x", api_key=API_KEY).start()
    settings.LATTICE_BILLING = True
    settings.STRIPE_SECRET_KEY = API_KEY
    settings.STRIPE_API_BASE = double.url
    settings.STRIPE_USAGE_EVENT_NAME = "lattice_usage_cents"
    yield double
    double.stop()


def setup(*args: str) -> str:
    out = StringIO()
    call_command("billing_stripe_setup", *args, stdout=out, stderr=out)
    return out.getvalue()


def counts(double: StripeDouble) -> tuple[int, int, int]:
    return len(double.meters), len(double.products), len(double.prices)


def by_lookup_key(double: StripeDouble) -> dict[str, dict[str, Any]]:
    return {price["lookup_key"]: price for price in double.prices.values()}


def test_it_creates_the_meter_and_prices_and_points_the_plans_at_them(empty_stripe):
    output = setup()

    assert counts(empty_stripe) == (1, 3, 3)
    (meter,) = empty_stripe.meters.values()
    assert meter["event_name"] == "lattice_usage_cents"
    assert meter["default_aggregation"]["formula"] == "sum"
    assert meter["customer_mapping"]["event_payload_key"] == "stripe_customer_id"
    assert meter["value_settings"]["event_payload_key"] == "value"
    prices = by_lookup_key(empty_stripe)
    assert set(prices) == {"lattice_usage_cents", "lattice_pro_monthly", "lattice_growth_monthly"}
    usage = prices["lattice_usage_cents"]
    assert usage["unit_amount"] == 1
    assert usage["currency"] == "usd"
    assert usage["recurring"]["interval"] == "month"
    assert usage["recurring"]["usage_type"] == "metered"
    assert usage["recurring"]["meter"] == meter["id"]
    for slug, amount in [("pro", 800), ("growth", 3900)]:
        price = prices[f"lattice_{slug}_monthly"]
        assert price["unit_amount"] == amount
        assert price["recurring"]["usage_type"] == "licensed"
        assert price["recurring"]["interval"] == "month"
        assert empty_stripe.products[price["product"]]["metadata"] == {"lattice_plan": slug}
        assert Plan.objects.get(slug=slug).stripe_price_id == price["id"]
    assert Plan.objects.get(slug="free").stripe_price_id == ""
    assert f"STRIPE_USAGE_PRICE={usage['id']}\n" in output
    assert f"STRIPE_USAGE_METER={meter['id']}\n" in output
    assert "/billing/stripe/webhook/" in output
    assert "invoice.payment_failed" in output
    assert "STRIPE_WEBHOOK_SECRET" in output


def test_a_second_run_creates_nothing_and_reports_what_it_found(empty_stripe):
    setup()
    before = counts(empty_stripe)
    pro_price = Plan.objects.get(slug="pro").stripe_price_id

    output = setup()

    assert counts(empty_stripe) == before
    assert Plan.objects.get(slug="pro").stripe_price_id == pro_price
    assert ": created " not in output
    assert output.count(": found ") == 4
    assert "Created 0, found 4." in output


def test_a_dry_run_creates_and_saves_nothing(empty_stripe):
    output = setup("--dry-run")

    assert counts(empty_stripe) == (0, 0, 0)
    assert Plan.objects.get(slug="pro").stripe_price_id == "price_lattice_pro_monthly"
    assert output.count("missing, would create") == 4
    assert "STRIPE_USAGE_PRICE=" not in output


def test_it_warns_when_a_found_price_no_longer_matches_its_plan(empty_stripe):
    setup()
    Plan.objects.filter(slug="pro").update(monthly_price=Decimal("10"))

    output = setup()

    assert "it charges 800, not 1000, usd cents" in output
    assert counts(empty_stripe) == (1, 3, 3)


def test_it_refuses_a_deactivated_meter_with_the_same_event_name(empty_stripe):
    empty_stripe.add_meter("mtr_old", event_name="lattice_usage_cents")
    empty_stripe.meters["mtr_old"]["status"] = "inactive"

    with pytest.raises(CommandError, match="mtr_old is deactivated"):
        setup()
    assert counts(empty_stripe) == (1, 0, 0)


def test_it_refuses_without_a_secret_key(empty_stripe, settings):
    settings.STRIPE_SECRET_KEY = ""

    with pytest.raises(CommandError, match="STRIPE_SECRET_KEY is empty"):
        setup()
    assert counts(empty_stripe) == (0, 0, 0)


def test_it_says_so_readably_when_stripe_cannot_be_reached(empty_stripe):
    empty_stripe.stop()

    with pytest.raises(CommandError, match=r"^Stripe: .*communicating with Stripe") as caught:
        setup()
    assert "Traceback" not in str(caught.value)
