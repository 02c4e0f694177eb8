"""Checkout Sessions, subscriptions and invoices, built from Stripe's example objects.

The same recipe as :mod:`.objects` (:func:`~.objects.build`): ids, links, amounts and
times set on a fresh copy of the example. Amounts follow Stripe's rules for the prices
used: licensed items cost ``unit_amount * quantity`` up front; metered items have no
quantity and bill in arrears.
"""

from __future__ import annotations

import copy
from typing import Any

from .objects import (
    DAY,
    HOUR,
    JSON,
    PERIOD,
    build,
    is_metered,
    line_amount,
    list_object,
    money,
    new_id,
)

# The fields a plan copies from its price, and from the price's ``recurring``.
_PLAN_MIRRORS = ("id", "active", "billing_scheme", "created", "currency", "nickname", "product")
_PLAN_MIRRORS_RECURRING = ("interval", "interval_count", "meter", "usage_type")


def plan(price: JSON) -> JSON:
    """The legacy ``plan`` mirror Stripe still puts on subscription items."""
    recurring = price["recurring"] or {}
    return build(
        "subscription_item",
        "plan",
        **{name: price[name] for name in _PLAN_MIRRORS},
        amount=price["unit_amount"],
        amount_decimal=price["unit_amount_decimal"],
        metadata=copy.deepcopy(price["metadata"]),
        **{name: recurring.get(name) for name in _PLAN_MIRRORS_RECURRING},
    )


def set_item_price(item: JSON, price: JSON, quantity: int | None) -> None:
    item["price"] = copy.deepcopy(price)
    item["plan"] = plan(price)
    # Stripe leaves quantity off metered items: usage, not seats, sets what they cost.
    if is_metered(price):
        item.pop("quantity", None)
    else:
        item["quantity"] = quantity or 1


def subscription_item(
    *, subscription: str, price: JSON, quantity: int | None, created: int
) -> JSON:
    obj = build(
        "subscription_item",
        id=new_id("si", 14),
        created=created,
        subscription=subscription,
        metadata={},
        current_period_start=created,
        current_period_end=created + PERIOD,
    )
    set_item_price(obj, price, quantity)
    return obj


def subscription(
    *, customer: str, items: list[tuple[JSON, int | None]], metadata: dict[str, str], created: int
) -> JSON:
    sub_id = new_id("sub", 24)
    data = [
        subscription_item(subscription=sub_id, price=p, quantity=q, created=created)
        for p, q in items
    ]
    obj = build(
        "subscription",
        id=sub_id,
        customer=customer,
        created=created,
        start_date=created,
        billing_cycle_anchor=created,
        cancel_at_period_end=False,
        currency=items[0][0]["currency"],
        discounts=[],
        items=list_object(data, f"/v1/subscription_items?subscription={sub_id}"),
        metadata=dict(metadata),
        billing_mode={"type": "classic", "flexible": None},
        billing_schedules=[],
        managed_payments={"enabled": False},
        status="active",
    )
    obj["payment_settings"]["save_default_payment_method"] = "off"
    return obj


def invoice_line(
    *, invoice: str, subscription: JSON, item: JSON, product_name: str, currency: str
) -> JSON:
    price = item["price"]
    quantity = item.get("quantity")
    amount = line_amount(price, quantity)
    interval = (price["recurring"] or {}).get("interval")
    each = money(price["unit_amount"], currency) + (f" / {interval}" if interval else "")
    return build(
        "invoice",
        "lines",
        "data",
        0,
        id=new_id("il", 24),
        amount=amount,
        currency=currency,
        description=f"{quantity or 0} × {product_name} (at {each})",  # noqa: RUF001 - Stripe's wording
        discount_amounts=[],
        discountable=True,
        discounts=[],
        invoice=invoice,
        metadata={},
        period={"start": item["current_period_start"], "end": item["current_period_end"]},
        quantity=quantity or 0,
        quantity_decimal=str(quantity or 0),
        subscription=subscription["id"],
        pretax_credit_amounts=[],
        taxes=[],
        parent={
            "type": "subscription_item_details",
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription["id"],
                "subscription_item": item["id"],
            },
        },
        pricing={
            "type": "price_details",
            "price_details": {"price": price["id"], "product": price["product"]},
            "unit_amount_decimal": price["unit_amount_decimal"],
        },
        subtotal=amount,
    )


def invoice(
    *,
    customer: JSON,
    subscription: JSON,
    product_names: dict[str, str],
    billing_reason: str,
    status: str,
    hosted_url: str,
    pdf_url: str,
    created: int,
) -> JSON:
    """A subscription invoice: ``paid``, ``open`` after one failed attempt, or a ``draft``
    that Stripe finalizes about an hour later (no number, page or PDF until then)."""
    if status not in {"draft", "open", "paid"}:
        raise ValueError(f"No invoice is made {status}.")
    paid, draft = status == "paid", status == "draft"
    invoice_id = new_id("in", 24)
    currency = subscription["currency"]
    lines = [
        invoice_line(
            invoice=invoice_id,
            subscription=subscription,
            item=item,
            product_name=product_names.get(item["price"]["product"], item["price"]["product"]),
            currency=currency,
        )
        for item in subscription["items"]["data"]
    ]
    total = sum(line["amount"] for line in lines)
    number = None
    if not draft:  # Stripe numbers an invoice when it finalizes it
        sequence = customer["next_invoice_sequence"]
        customer["next_invoice_sequence"] = sequence + 1
        number = f"{customer['invoice_prefix']}-{sequence:04d}"
    obj = build(
        "invoice",
        id=invoice_id,
        amount_due=total,
        amount_overpaid=0,
        amount_paid=total if paid else 0,
        amount_remaining=0 if paid else total,
        attempt_count=0 if draft else 1,
        attempted=not draft,
        auto_advance=not paid,
        automatically_finalizes_at=created + HOUR if draft else None,
        billing_reason=billing_reason,
        created=created,
        currency=currency,
        customer=customer["id"],
        customer_address=customer["address"],
        customer_email=customer["email"],
        customer_name=customer["name"],
        customer_phone=customer["phone"],
        effective_at=None if draft else created,
        ending_balance=None if draft else 0,
        hosted_invoice_url=None if draft else hosted_url.format(id=invoice_id),
        invoice_pdf=None if draft else pdf_url.format(id=invoice_id),
        lines=list_object(lines, f"/v1/invoices/{invoice_id}/lines"),
        metadata={},
        next_payment_attempt=None if paid else created + (HOUR if draft else 3 * DAY),
        number=number,
        parent={
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription["metadata"]),
                "subscription": subscription["id"],
            },
        },
        period_end=created,
        period_start=created,
        status=status,
        subtotal=total,
        subtotal_excluding_tax=total,
        total=total,
        total_discount_amounts=[],
        total_excluding_tax=total,
        total_pretax_credit_amounts=[],
        total_taxes=[],
        webhooks_delivered_at=None if draft else created,
    )
    obj["status_transitions"].update(
        finalized_at=None if draft else created, paid_at=created if paid else None
    )
    return obj


def checkout_item(*, price: JSON, quantity: int | None, product_name: str) -> JSON:
    amount = line_amount(price, quantity)
    return build(
        "item",
        id=new_id("li", 24),
        amount_subtotal=amount,
        amount_total=amount,
        currency=price["currency"],
        description=product_name,
        metadata={},
        price=copy.deepcopy(price),
        quantity=quantity,
    )


def checkout_session(
    *, mode: str, url_base: str, amount: int, currency: str, created: int, **fields: Any
) -> JSON:
    session_id = new_id("cs_test", 58)
    subscription_mode = mode == "subscription"
    obj = build(
        "checkout.session",
        id=session_id,
        amount_subtotal=amount,
        amount_total=amount,
        created=created,
        currency=currency,
        discounts=[],
        expires_at=created + DAY,
        invoice_creation=None
        if subscription_mode
        else {
            "enabled": False,
            "invoice_data": {
                "account_tax_ids": None,
                "custom_fields": None,
                "description": None,
                "footer": None,
                "issuer": None,
                "metadata": {},
                "rendering_options": None,
            },
        },
        adaptive_pricing={"enabled": False},
        managed_payments={"enabled": False},
        mode=mode,
        payment_method_collection="always" if subscription_mode else None,
        payment_status="unpaid",
        status="open",
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        ui_mode="hosted",
        url=f"{url_base}/checkout/{session_id}",
        **fields,
    )
    obj["customer_creation"] = None if obj["customer"] else "always"
    return obj
