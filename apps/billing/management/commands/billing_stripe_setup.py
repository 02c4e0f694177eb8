"""``manage.py billing_stripe_setup``: create at Stripe what Lattice's billing needs, once.

A deployer runs it against their Stripe account (test or live keys). It finds, by event
name and lookup key, or else creates: the usage meter, the metered usage price (one unit
is one cent), and a monthly price for every active paid plan; then it writes each plan's
price id into the database and prints the .env lines and the webhook to set up by hand.
Running it again creates nothing; ``--dry-run`` only reads from Stripe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

import stripe
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from apps.billing import stripe_api
from apps.billing.events import HANDLED
from apps.billing.models import Plan

if TYPE_CHECKING:
    from argparse import ArgumentParser

USAGE_LOOKUP_KEY = "lattice_usage_cents"
USAGE_PRODUCT_NAME = "Lattice machine usage"
METER_DISPLAY_NAME = "Lattice usage (cents)"
WEBHOOK_PATH = "/billing/stripe/webhook/"
# Stand-in for the id of an object a dry run would create.
NEW = "<new>"


def plan_lookup_key(plan: Plan) -> str:
    return f"lattice_{plan.slug}_monthly"


def cents(amount: Decimal) -> int:
    return int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def price_differences(
    price: stripe.Price, *, unit_amount: int, currency: str, usage_type: str, meter: str
) -> list[str]:
    """How an existing price differs from the one this command would create."""
    found = []
    if price.unit_amount != unit_amount:
        found.append(f"it charges {price.unit_amount}, not {unit_amount}, {currency} cents")
    if price.currency != currency:
        found.append(f"its currency is {price.currency}, not {currency}")
    recurring = price.recurring
    if recurring is None or recurring.interval != "month" or recurring.interval_count != 1:
        found.append("it is not a monthly recurring price")
    else:
        if recurring.usage_type != usage_type:
            found.append(f"it is {recurring.usage_type}, not {usage_type}")
        if meter not in {"", NEW} and recurring.meter != meter:
            found.append(f"it counts meter {recurring.meter}, not {meter}")
    return found


@dataclass
class Setup:
    """One run: looks each object up at Stripe, creates what is missing, tells ``out``."""

    client: stripe.StripeClient
    out: OutputWrapper
    err: OutputWrapper
    currency: str
    dry_run: bool
    created: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)

    def meter(self) -> str:
        """The id of the active meter counting settings.STRIPE_USAGE_EVENT_NAME."""
        event_name = settings.STRIPE_USAGE_EVENT_NAME
        what = f"Usage meter for event {event_name!r}"
        meters = self.client.v1.billing.meters.list(params={"limit": 100})
        same = [m for m in meters.auto_paging_iter() if m.event_name == event_name]
        active = next((m for m in same if m.status == "active"), None)
        if active is not None:
            self._found(what, active.id)
            return active.id
        if same:
            # A deactivated meter keeps its event name: Stripe would refuse a second one.
            raise CommandError(
                f"{what}: meter {same[0].id} is deactivated. Reactivate it in Stripe "
                "(Billing > Meters), or set STRIPE_USAGE_EVENT_NAME to another name."
            )
        if self.dry_run:
            return self._would_create(what)
        made = self.client.v1.billing.meters.create(
            params={
                "display_name": METER_DISPLAY_NAME,
                "event_name": event_name,
                "default_aggregation": {"formula": "sum"},
                # What apps.billing.metering sends in each meter event's payload.
                "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
                "value_settings": {"event_payload_key": "value"},
            },
        )
        self._created(what, made.id)
        return made.id

    def usage_price(self, meter: str) -> str:
        """The id of the metered price that bills usage: one unit is one cent."""
        return self._price(
            what="Usage price",
            lookup_key=USAGE_LOOKUP_KEY,
            product_name=USAGE_PRODUCT_NAME,
            product_metadata={"lattice_usage": "cents"},
            unit_amount=1,
            usage_type="metered",
            meter=meter,
        )

    def plan_price(self, plan: Plan) -> str:
        """The id of ``plan``'s monthly price, written into the plan if it differs."""
        price = self._price(
            what=f"{plan.name} plan price",
            lookup_key=plan_lookup_key(plan),
            product_name=f"Lattice {plan.name}",
            product_metadata={"lattice_plan": plan.slug},
            unit_amount=cents(plan.monthly_price),
            usage_type="licensed",
            meter="",
        )
        if plan.stripe_price_id == price:
            self.out.write(f"  The {plan.name} plan already uses it.")
        elif self.dry_run:
            now = plan.stripe_price_id or "none"
            self.out.write(f"  Would set the {plan.name} plan's Stripe price (now {now}).")
        else:
            previous = plan.stripe_price_id or "none"
            plan.stripe_price_id = price
            plan.save(update_fields=["stripe_price_id"])
            self.out.write(f"  Set the {plan.name} plan's Stripe price (was {previous}).")
        return price

    def _price(
        self,
        *,
        what: str,
        lookup_key: str,
        product_name: str,
        product_metadata: dict[str, str],
        unit_amount: int,
        usage_type: str,
        meter: str,
    ) -> str:
        what = f"{what} {lookup_key!r}"
        prices = self.client.v1.prices.list(
            params={"lookup_keys": [lookup_key], "active": True, "limit": 1}
        )
        if prices.data:
            price = prices.data[0]
            self._found(what, price.id)
            differences = price_differences(
                price,
                unit_amount=unit_amount,
                currency=self.currency,
                usage_type=usage_type,
                meter=meter,
            )
            for difference in differences:
                self.err.write(
                    f"  Warning: {difference}. Stripe charges what the price says: archive it "
                    "in Stripe and run this again to make a new one."
                )
            return price.id
        if self.dry_run:
            return self._would_create(f"{what} (and its product {product_name!r})")
        product = self.client.v1.products.create(
            params={"name": product_name, "metadata": product_metadata},
        )
        recurring: Any = {"interval": "month", "usage_type": usage_type}
        if meter:
            recurring["meter"] = meter
        price = self.client.v1.prices.create(
            params={
                "product": product.id,
                "currency": self.currency,
                "unit_amount": unit_amount,
                "recurring": recurring,
                "lookup_key": lookup_key,
                # An archived price may still hold the key: this one takes it over.
                "transfer_lookup_key": True,
            },
        )
        self._created(f"{what} (product {product.id})", price.id)
        return price.id

    def _found(self, what: str, object_id: str) -> None:
        self.found.append(object_id)
        self.out.write(f"{what}: found {object_id}")

    def _created(self, what: str, object_id: str) -> None:
        self.created.append(object_id)
        self.out.write(f"{what}: created {object_id}")

    def _would_create(self, what: str) -> str:
        self.created.append(NEW)
        self.out.write(f"{what}: missing, would create")
        return NEW


class Command(BaseCommand):
    help = (
        "Find or create at Stripe the usage meter, the usage price and each paid plan's "
        "monthly price; write the plans' price ids and print the settings to set."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--currency",
            default="usd",
            help="The currency of the prices it creates (default: usd).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Only look things up: say what would be created, create and save nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        key = settings.STRIPE_SECRET_KEY
        if not key:
            raise CommandError(
                "STRIPE_SECRET_KEY is empty: put your Stripe secret key (sk_test_... or "
                "sk_live_...) in .env first."
            )
        currency = str(options["currency"]).lower()
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise CommandError(f"--currency takes a three-letter ISO code, not {currency!r}.")
        mode = "live" if "_live_" in key else "test"
        where = settings.STRIPE_API_BASE or "https://api.stripe.com"
        self.stdout.write(
            f"Stripe in {mode} mode at {where}" + (" (dry run)" if options["dry_run"] else "")
        )
        setup = Setup(
            client=stripe_api.client(),
            out=self.stdout,
            err=self.stderr,
            currency=currency,
            dry_run=options["dry_run"],
        )
        try:
            meter = setup.meter()
            usage_price = setup.usage_price(meter)
            for plan in Plan.objects.filter(active=True, monthly_price__gt=0):
                setup.plan_price(plan)
        except stripe.StripeError as exc:
            made = [object_id for object_id in setup.created if object_id != NEW]
            kept = f"\nKept what was created before ({', '.join(made)}): run again to finish."
            raise CommandError(f"Stripe: {exc.user_message or exc}{kept if made else ''}") from exc
        self._summary(setup, meter=meter, usage_price=usage_price)

    def _summary(self, setup: Setup, *, meter: str, usage_price: str) -> None:
        if setup.dry_run:
            self.stdout.write(
                f"\nDry run: {len(setup.created)} to create, {len(setup.found)} found; "
                "nothing was created or saved."
            )
            if NEW in {meter, usage_price}:
                return
        else:
            self.stdout.write(f"\nCreated {len(setup.created)}, found {len(setup.found)}.")
        self.stdout.write("\nPut these in .env (then restart Lattice):")
        self.stdout.write(f"STRIPE_USAGE_PRICE={usage_price}")
        self.stdout.write(f"STRIPE_USAGE_METER={meter}")
        host = next((h.lstrip(".") for h in settings.ALLOWED_HOSTS if "*" not in h), "<host>")
        events = "\n".join(f"  {name}" for name in sorted(HANDLED))
        self.stdout.write(
            f"\nThen, in Stripe (Developers > Webhooks), add an endpoint at\n"
            f"  https://{host}{WEBHOOK_PATH}\n"
            f"sending these events:\n{events}\n"
            "and put its signing secret in .env as STRIPE_WEBHOOK_SECRET=whsec_...\n"
            "In development, run instead\n"
            f"  stripe listen --forward-to localhost:8000{WEBHOOK_PATH}\n"
            "and use the whsec_... secret it prints."
        )
