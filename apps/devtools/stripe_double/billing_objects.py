"""Checkout Sessions, subscriptions and invoices, built from Stripe's example objects.

The same recipe as :mod:`.objects`: a deep copy of the fixture with ids, links, amounts
and times set. Amounts follow Stripe's rules for the prices used: licensed items cost
``unit_amount * quantity`` up front; metered items have no quantity and bill in arrears.
"""

from __future__ import annotations

import copy
from typing import Any

from .objects import (
    DAY,
    HOUR,
    JSON,
    PERIOD,
    fixture,
    is_metered,
    line_amount,
    list_object,
    money,
    new_id,
)


def plan(price: JSON) -> JSON:
    """The legacy ``plan`` mirror Stripe still puts on subscription items."""
    obj: JSON = fixture("subscription_item")["plan"]
    recurring = price["recurring"] or {}
    obj.update(
        id=price["id"],
        active=price["active"],
        amount=price["unit_amount"],
        amount_decimal=price["unit_amount_decimal"],
        billing_scheme=price["billing_scheme"],
        created=price["created"],
        currency=price["currency"],
        interval=recurring.get("interval"),
        interval_count=recurring.get("interval_count"),
        livemode=False,
        metadata=copy.deepcopy(price["metadata"]),
        meter=recurring.get("meter"),
        nickname=price["nickname"],
        product=price["product"],
        tiers_mode=None,
        transform_usage=None,
        trial_period_days=None,
        usage_type=recurring.get("usage_type"),
    )
    return obj


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
    obj = fixture("subscription_item")
    obj.update(
        id=new_id("si", 14),
        created=created,
        subscription=subscription,
        metadata={},
        billing_thresholds=None,
        current_period_start=created,
        current_period_end=created + PERIOD,
    )
    set_item_price(obj, price, quantity)
    return obj


def subscription(
    *, customer: str, items: list[tuple[JSON, int | None]], metadata: dict[str, str], created: int
) -> JSON:
    obj = fixture("subscription")
    sub_id = new_id("sub", 24)
    data = [
        subscription_item(subscription=sub_id, price=p, quantity=q, created=created)
        for p, q in items
    ]
    obj.update(
        id=sub_id,
        customer=customer,
        created=created,
        start_date=created,
        billing_cycle_anchor=created,
        billing_cycle_anchor_config=None,
        automatic_tax={"enabled": False, "liability": None, "disabled_reason": None},
        cancel_at=None,
        canceled_at=None,
        ended_at=None,
        cancel_at_period_end=False,
        cancellation_details={"comment": None, "feedback": None, "reason": None},
        currency=items[0][0]["currency"],
        discounts=[],
        items=list_object(data, f"/v1/subscription_items?subscription={sub_id}"),
        latest_invoice=None,
        livemode=False,
        metadata=dict(metadata),
        next_pending_invoice_item_invoice=None,
        pause_collection=None,
        payment_settings={
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        pending_invoice_item_interval=None,
        pending_setup_intent=None,
        pending_update=None,
        transfer_data=None,
        trial_end=None,
        trial_start=None,
        billing_thresholds=None,
        billing_mode={"type": "classic", "flexible": None},
        billing_schedules=[],
        managed_payments={"enabled": False},
        status="active",
    )
    return obj


def invoice_line(
    *, invoice: str, subscription: JSON, item: JSON, product_name: str, currency: str
) -> JSON:
    obj: JSON = fixture("invoice")["lines"]["data"][0]
    price = item["price"]
    quantity = item.get("quantity")
    amount = line_amount(price, quantity)
    interval = (price["recurring"] or {}).get("interval")
    each = money(price["unit_amount"], currency) + (f" / {interval}" if interval else "")
    obj.update(
        id=new_id("il", 24),
        amount=amount,
        currency=currency,
        description=f"{quantity or 0} × {product_name} (at {each})",  # noqa: RUF001 - Stripe's wording
        discount_amounts=[],
        discountable=True,
        discounts=[],
        invoice=invoice,
        livemode=False,
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
    return obj


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
    obj = fixture("invoice")
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
    obj.update(
        id=invoice_id,
        account_name=None,
        amount_due=total,
        amount_overpaid=0,
        amount_paid=total if paid else 0,
        amount_remaining=0 if paid else total,
        attempt_count=0 if draft else 1,
        attempted=not draft,
        auto_advance=not paid,
        automatically_finalizes_at=created + HOUR if draft else None,
        automatic_tax={
            "enabled": False,
            "liability": None,
            "status": None,
            "disabled_reason": None,
            "provider": None,
        },
        billing_reason=billing_reason,
        created=created,
        currency=currency,
        customer=customer["id"],
        customer_address=customer["address"],
        customer_email=customer["email"],
        customer_name=customer["name"],
        customer_phone=customer["phone"],
        customer_shipping=None,
        due_date=None,
        effective_at=None if draft else created,
        ending_balance=None if draft else 0,
        from_invoice=None,
        hosted_invoice_url=None if draft else hosted_url.format(id=invoice_id),
        invoice_pdf=None if draft else pdf_url.format(id=invoice_id),
        last_finalization_error=None,
        lines=list_object(lines, f"/v1/invoices/{invoice_id}/lines"),
        livemode=False,
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
        payment_settings={
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        period_end=created,
        period_start=created,
        shipping_cost=None,
        shipping_details=None,
        status=status,
        status_transitions={
            "finalized_at": None if draft else created,
            "marked_uncollectible_at": None,
            "paid_at": created if paid else None,
            "voided_at": None,
        },
        subtotal=total,
        subtotal_excluding_tax=total,
        total=total,
        total_discount_amounts=[],
        total_excluding_tax=total,
        total_pretax_credit_amounts=[],
        total_taxes=[],
        webhooks_delivered_at=None if draft else created,
    )
    return obj


def checkout_item(*, price: JSON, quantity: int | None, product_name: str) -> JSON:
    obj = fixture("item")
    amount = line_amount(price, quantity)
    obj.update(
        id=new_id("li", 24),
        adjustable_quantity=None,
        amount_subtotal=amount,
        amount_total=amount,
        currency=price["currency"],
        description=product_name,
        metadata={},
        price=copy.deepcopy(price),
        quantity=quantity,
    )
    return obj


def checkout_session(
    *, mode: str, url_base: str, amount: int, currency: str, created: int, **fields: Any
) -> JSON:
    obj = fixture("checkout.session")
    session_id = new_id("cs_test", 58)
    subscription_mode = mode == "subscription"
    obj.update(
        id=session_id,
        after_expiration=None,
        amount_subtotal=amount,
        amount_total=amount,
        automatic_tax={"enabled": False, "liability": None, "status": None, "provider": None},
        collected_information=None,
        consent=None,
        consent_collection=None,
        created=created,
        currency=currency,
        currency_conversion=None,
        custom_text={
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        customer_details=None,
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
        livemode=False,
        adaptive_pricing={"enabled": False},
        managed_payments={"enabled": False},
        mode=mode,
        payment_intent=None,
        payment_method_collection="always" if subscription_mode else None,
        payment_method_configuration_details=None,
        payment_status="unpaid",
        permissions=None,
        shipping_address_collection=None,
        shipping_cost=None,
        status="open",
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        ui_mode="hosted",
        url=f"{url_base}/checkout/{session_id}",
        wallet_options=None,
    )
    obj.update(fields)
    obj["customer_creation"] = None if obj["customer"] else "always"
    return obj
