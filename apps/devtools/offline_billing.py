"""Billing without Stripe: a local Stripe test double seeded with Lattice's plans.

``make dev`` and the tests use it; the real ``stripe`` client reaches it through
STRIPE_API_BASE. Its hosted checkout and portal pages complete or cancel and
send the matching signed webhooks, as Stripe would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from apps.billing.plans import PLANS, USAGE_METER_ID, USAGE_PRICE_ID
from apps.devtools.stripe_double import StripeDouble

if TYPE_CHECKING:
    from collections.abc import Callable

# Test-mode placeholders: the double accepts only these, and nothing real uses them.
SECRET_KEY = "sk_test_lattice_offline"  # noqa: S105
WEBHOOK_SECRET = "whsec_lattice_offline"  # noqa: S105
EVENT_NAME = "lattice_usage_cents"


def seed(double: StripeDouble) -> StripeDouble:
    """The products, prices and meter that the seeded plans name."""
    for plan in PLANS:
        if not plan["stripe_price_id"]:
            continue
        product = f"prod_lattice_{plan['slug']}"
        double.add_product(product, f"Lattice {plan['name']}")
        double.add_price(
            plan["stripe_price_id"],
            product=product,
            unit_amount=int(plan["monthly_price"] * 100),
            nickname=plan["name"],
        )
    double.add_meter(USAGE_METER_ID, event_name=EVENT_NAME, display_name="Lattice usage (cents)")
    double.add_product("prod_lattice_usage", "Lattice machine usage")
    double.add_price(
        USAGE_PRICE_ID,
        product="prod_lattice_usage",
        unit_amount=1,
        usage_type="metered",
        meter=USAGE_METER_ID,
        nickname="Usage",
    )
    return double


def start_double(
    *,
    webhook_url: str | None = None,
    deliver: Callable[[bytes, str], None] | None = None,
    port: int = 0,
) -> StripeDouble:
    double = StripeDouble(
        webhook_secret=WEBHOOK_SECRET,
        webhook_url=webhook_url,
        deliver=deliver,
        api_key=SECRET_KEY,
    )
    seed(double)
    double.start(port=port)
    return double


def settings_for(double: StripeDouble) -> dict[str, Any]:
    """The Django settings that point Lattice's billing at ``double``."""
    return {
        "LATTICE_BILLING": True,
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": double.url,
        "STRIPE_USAGE_PRICE": USAGE_PRICE_ID,
        "STRIPE_USAGE_METER": USAGE_METER_ID,
        "STRIPE_USAGE_EVENT_NAME": EVENT_NAME,
    }
