"""Stripe objects, each a deep copy of Stripe's own example object with fields overridden.

``fixtures.json`` holds Stripe's example objects (see its ``_notice``), so every object
the double serves carries every field real Stripe sends. :func:`build` is the one recipe:
it nulls the examples' sample values (1234567890 timestamps, sample discounts, shipping
costs) so each object reads like a fresh test-mode one, then sets the fields a builder
gives. The builders here make the catalogue, portal, meter and event objects; those of a
subscription's life are in :mod:`.billing_objects`.
"""

from __future__ import annotations

import copy
import json
import secrets
import string
import time
from functools import cache
from pathlib import Path
from typing import Any

JSON = dict[str, Any]

#: The API version the installed stripe-python (14.4.2) pins; events carry it.
API_VERSION = "2026-02-25.clover"
HOUR = 3_600
DAY = 86_400
PERIOD = 30 * DAY
_ALPHABET = string.ascii_letters + string.digits

#: Per object type, the fields (``parent.field`` one level down) whose example values are
#: samples that a fresh test-mode object does not have: :func:`build` starts them at null.
_SAMPLES = {
    "customer": "address currency discount shipping",
    "product": "default_price description package_dimensions",
    "price": "transform_quantity",
    "plan": "tiers_mode transform_usage trial_period_days",
    "billing_portal.session": "flow",
    "subscription_item": "billing_thresholds",
    "subscription": (
        "automatic_tax.liability billing_cycle_anchor_config billing_thresholds cancel_at"
        " canceled_at ended_at latest_invoice next_pending_invoice_item_invoice"
        " pause_collection payment_settings.payment_method_options"
        " pending_invoice_item_interval pending_setup_intent pending_update transfer_data"
        " trial_end trial_start"
    ),
    "invoice": (
        "account_name automatic_tax.liability customer_shipping due_date from_invoice"
        " last_finalization_error payment_settings.payment_method_options shipping_cost"
        " shipping_details"
    ),
    "item": "adjustable_quantity",
    "checkout.session": (
        "after_expiration automatic_tax.liability collected_information consent"
        " consent_collection currency_conversion custom_text.after_submit"
        " custom_text.shipping_address custom_text.submit"
        " custom_text.terms_of_service_acceptance customer_details payment_intent"
        " payment_method_configuration_details permissions shipping_address_collection"
        " shipping_cost wallet_options"
    ),
}


@cache
def _resources() -> dict[str, JSON]:
    text = (Path(__file__).parent / "fixtures.json").read_text(encoding="utf-8")
    resources: dict[str, JSON] = json.loads(text)["resources"]
    return resources


def fixture(name: str, *path: str | int) -> JSON:
    """A deep copy of Stripe's example ``name``, or of the part of it at ``path``."""
    found: Any = _resources()[name]
    for step in path:
        found = found[step]
    return copy.deepcopy(found)


def build(name: str, /, *path: str | int, **fields: Any) -> JSON:
    """Stripe's example ``name`` (or the object at ``path`` in it) as a fresh test-mode
    object: its sample values null, ``livemode`` false, then ``fields`` set."""
    obj = fixture(name, *path)
    for sample in _SAMPLES.get(obj["object"], "").split():
        holder, _, field = sample.rpartition(".")
        (obj[holder] if holder else obj)[field] = None
    if "livemode" in obj:
        obj["livemode"] = False
    obj.update(fields)
    return obj


def new_id(prefix: str, length: int = 24) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def now() -> int:
    return int(time.time())


def list_object(data: list[JSON], url: str, *, has_more: bool = False) -> JSON:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def money(amount: int | None, currency: str) -> str:
    if amount is None:
        return "usage-based"
    if currency == "usd":
        return f"${amount / 100:,.2f}"
    return f"{amount / 100:,.2f} {currency.upper()}"


def is_metered(price: JSON) -> bool:
    return bool(price.get("recurring")) and price["recurring"]["usage_type"] == "metered"


def line_amount(price: JSON, quantity: int | None) -> int:
    """What a line costs up front: metered usage is billed in arrears, so nothing."""
    if is_metered(price) or price["unit_amount"] is None:
        return 0
    return int(price["unit_amount"]) * (quantity or 0)


def customer(*, created: int, **fields: Any) -> JSON:
    return build(
        "customer",
        id=new_id("cus", 14),
        created=created,
        invoice_prefix=secrets.token_hex(4).upper(),
        **fields,
    )


def product(*, id: str, name: str, created: int) -> JSON:  # noqa: A002 - Stripe's field name
    return build("product", id=id, name=name, created=created, updated=created, type="service")


def price(
    *,
    id: str,  # noqa: A002 - the object's own field name
    product: str,
    unit_amount: int | None,
    currency: str,
    interval: str | None,
    usage_type: str,
    meter: str | None,
    lookup_key: str | None,
    nickname: str | None,
    created: int,
) -> JSON:
    obj = build(
        "price",
        id=id,
        product=product,
        unit_amount=unit_amount,
        unit_amount_decimal=None if unit_amount is None else str(unit_amount),
        currency=currency,
        lookup_key=lookup_key,
        nickname=nickname,
        created=created,
    )
    if interval is None:
        obj.update(type="one_time", recurring=None)
    else:
        obj["type"] = "recurring"
        obj["recurring"].update(
            interval=interval, interval_count=1, meter=meter, usage_type=usage_type
        )
    return obj


def portal_session(
    *, customer: str, return_url: str | None, configuration: str, url_base: str, created: int
) -> JSON:
    session_id = new_id("bps", 24)
    return build(
        "billing_portal.session",
        id=session_id,
        configuration=configuration,
        created=created,
        customer=customer,
        return_url=return_url,
        url=f"{url_base}/portal/{session_id}",
    )


def meter(
    *,
    id: str,  # noqa: A002 - the object's own field name
    display_name: str,
    event_name: str,
    formula: str,
    customer_key: str,
    value_key: str,
    created: int,
) -> JSON:
    return build(
        "billing.meter",
        id=id,
        created=created,
        updated=created,
        customer_mapping={"event_payload_key": customer_key, "type": "by_id"},
        default_aggregation={"formula": formula},
        display_name=display_name,
        event_name=event_name,
        value_settings={"event_payload_key": value_key},
    )


def meter_event(
    *, event_name: str, identifier: str, payload: dict[str, str], timestamp: int, created: int
) -> JSON:
    return build(
        "billing.meter_event",
        created=created,
        event_name=event_name,
        identifier=identifier,
        payload=dict(payload),
        timestamp=timestamp,
    )


def meter_event_summary(*, meter: str, start: int, end: int, value: int) -> JSON:
    return build(
        "billing.meter_event_summary",
        id=new_id("mtrusg", 24),
        aggregated_value=value,
        start_time=start,
        end_time=end,
        meter=meter,
    )


def event(
    *,
    event_type: str,
    obj: JSON,
    previous_attributes: JSON | None,
    request: JSON | None,
    pending_webhooks: int,
    created: int,
) -> JSON:
    data: JSON = {"object": copy.deepcopy(obj)}
    if previous_attributes is not None:
        data["previous_attributes"] = copy.deepcopy(previous_attributes)
    return build(
        "event",
        id=new_id("evt", 24),
        api_version=API_VERSION,
        created=created,
        data=data,
        pending_webhooks=pending_webhooks,
        request=dict(request) if request else {"id": None, "idempotency_key": None},
        type=event_type,
    )
