"""A team's invoices, read from Stripe each time they are asked for; Lattice stores none.

``invoice_list`` is a read (no row changes, nothing audited): the team's customer's
most recent invoices at Stripe, newest first, as :class:`Invoice` values for the
billing page and the API. Drafts are left out: Stripe may still change them, and they
have neither a number nor a page to pay or download them from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import stripe

from apps.billing import services, stripe_api
from apps.billing.entitlements import billing_enabled
from apps.billing.models import BillingAccount
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from datetime import datetime

    from apps.accounts.models import User
    from apps.teams.models import Team

logger = logging.getLogger(__name__)

#: The most invoices a page shows; older ones are in Stripe's Customer Portal.
PAGE_SIZE = 24
#: The statuses a listed invoice may have (every one of Stripe's but ``draft``).
STATUSES = ("open", "paid", "uncollectible", "void")

# Stripe's amounts are in the currency's smallest unit: cents for most, the unit itself
# for zero-decimal currencies, thousandths for three-decimal ones
# (https://docs.stripe.com/currencies#zero-decimal).
_ZERO_DECIMAL = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)
_THREE_DECIMAL = frozenset(("bhd", "jod", "kwd", "omr", "tnd"))
_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}
UNAVAILABLE = "Invoices could not be loaded from Stripe just now. Try again in a few minutes."


def money(amount: int, currency: str) -> str:
    """``amount`` in ``currency``'s smallest unit as a person reads it: $12.34, 1,200 JPY."""
    code = currency.lower()
    digits = 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2
    value = f"{Decimal(abs(amount)).scaleb(-digits):,.{digits}f}"
    sign = "-" if amount < 0 else ""
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{value}" if symbol else f"{sign}{value} {code.upper()}"


@dataclass(frozen=True)
class Invoice:
    """One invoice as Stripe holds it; amounts in the currency's smallest unit."""

    id: str
    number: str | None
    status: str
    created: datetime
    period_start: datetime | None
    period_end: datetime | None
    currency: str
    total: int
    amount_due: int
    amount_paid: int
    amount_remaining: int
    hosted_invoice_url: str | None
    invoice_pdf: str | None

    @property
    def total_display(self) -> str:
        return money(self.total, self.currency)

    @property
    def remaining_display(self) -> str:
        return money(self.amount_remaining, self.currency)


@dataclass(frozen=True)
class InvoicePage:
    invoices: list[Invoice]
    #: Stripe holds older invoices than these.
    has_more: bool


def _period(invoice: Any) -> tuple[datetime | None, datetime | None]:
    """The period an invoice is for.

    Stripe's ``period_start``/``period_end`` look back one period on a subscription
    invoice (the usage billed in arrears). A subscription's first invoice has nothing to
    look back on (both are its creation): its lines' period is the one it pays for.
    """
    start, end = invoice.get("period_start"), invoice.get("period_end")
    if start == end:
        lines = (invoice.get("lines") or {}).get("data") or []
        periods = [line["period"] for line in lines if line.get("period")]
        if periods:
            start = min(period["start"] for period in periods)
            end = max(period["end"] for period in periods)
    return stripe_api.moment(start), stripe_api.moment(end)


def _invoice(found: Any) -> Invoice:
    start, end = _period(found)
    created = stripe_api.moment(found["created"])
    assert created is not None  # noqa: S101 - Stripe dates every invoice
    return Invoice(
        id=found["id"],
        number=found.get("number"),
        status=found["status"],
        created=created,
        period_start=start,
        period_end=end,
        currency=found["currency"],
        total=int(found["total"]),
        amount_due=int(found["amount_due"]),
        amount_paid=int(found["amount_paid"]),
        amount_remaining=int(found["amount_remaining"]),
        hosted_invoice_url=found.get("hosted_invoice_url") or None,
        invoice_pdf=found.get("invoice_pdf") or None,
    )


def _customer(team: Team) -> str:
    # A read: no BillingAccount is made for a team that has none.
    found = (
        BillingAccount.objects.for_team(team)
        .filter(team=team)
        .values_list("stripe_customer_id", flat=True)
        .first()
    )
    return found or ""


def invoice_list(*, team: Team, actor: User) -> InvoicePage:
    """The team's most recent invoices at Stripe (at most PAGE_SIZE, newest first, no drafts).

    No side effects. With billing off, or for a team without a Stripe customer, there are
    none and Stripe is not asked. Raises BillingUnavailableError (503) when Stripe is not
    configured or does not answer.
    """
    require_permission(
        team,
        actor,
        "billing.view",
        error=services.BillingPermissionError,
        message="Only the team's owners and admins see its invoices.",
    )
    customer = _customer(team) if billing_enabled() else ""
    if not customer:
        return InvoicePage(invoices=[], has_more=False)
    try:
        found = services._stripe().v1.invoices.list(
            params={"customer": customer, "limit": PAGE_SIZE},
            # A page waits on it: one try (stripe_api.TIMEOUT), then the page says so.
            options={"max_network_retries": 0},
        )
    except (stripe.StripeError, services.BillingUnavailableError) as exc:
        logger.warning(
            "Stripe did not list the invoices of team %s (customer %s): %s",
            team.slug,
            customer,
            exc,
        )
        raise services.BillingUnavailableError(UNAVAILABLE) from exc
    invoices = [
        _invoice(invoice)
        for invoice in found.data
        # The customer filter is Stripe's; checking it here too costs nothing, and no
        # other team's invoice can ever be shown if a filter were lost on the way.
        if stripe_api.object_id(invoice.get("customer")) == customer
        and invoice.get("status") != "draft"
    ]
    return InvoicePage(invoices=invoices, has_more=bool(found.has_more))
