"""Stand-ins for Stripe's hosted pages: Checkout, the customer portal, the invoice page
and its PDF.

Plain HTML forms, so a test (httpx, a browser) or a person developing offline can click
through them. Each action goes through a scenario step, which changes the state and
delivers the webhooks, then answers 303 to where Stripe would send the customer next.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .errors import StripeDoubleError
from .objects import JSON, is_metered, money

if TYPE_CHECKING:
    from .state import StripeState


@dataclass(frozen=True)
class Page:
    status: int
    html: str = ""
    location: str | None = None
    content_type: str = "text/html; charset=utf-8"


_VIEW = re.compile(r"/(checkout|portal|invoice)/([^/]+)")
_ACTION = re.compile(r"/(checkout|portal|invoice)/([^/]+)/([a-z]+)")


def handle(state: StripeState, method: str, path: str, form: dict[str, str]) -> Page:
    views = {"checkout": _checkout, "portal": _portal, "invoice": _invoice}
    actions = {
        ("checkout", "pay"): _checkout_pay,
        ("checkout", "cancel"): _checkout_cancel,
        ("portal", "change"): _portal_change,
        ("portal", "cancel"): _portal_cancel,
        ("portal", "renew"): _portal_renew,
        ("invoice", "pay"): _invoice_pay,
    }
    view, action = _VIEW.fullmatch(path), _ACTION.fullmatch(path)
    try:
        if method == "GET" and view is not None:
            return views[view[1]](state, view[2])
        if method == "GET" and action is not None and (action[1], action[3]) == ("invoice", "pdf"):
            return _invoice_pdf(state, action[2])
        if method == "POST" and action is not None and (action[1], action[3]) in actions:
            return actions[action[1], action[3]](state, action[2], form)
    except StripeDoubleError as exc:
        error = f"<p class='error'>{_e(exc.message)}</p>"
        return Page(exc.status, _document("Stripe double", error))
    return _not_found()


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _document(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title></head>\n<body><main>\n<h1>{_e(title)}</h1>\n{body}\n"
        "</main></body></html>\n"
    )


def _not_found() -> Page:
    return Page(404, _document("Not found", "<p>This page does not exist (or expired).</p>"))


def _post_button(action: str, button_id: str, label: str, fields: dict[str, str]) -> str:
    hidden = "".join(
        f"<input type='hidden' name='{_e(name)}' value='{_e(value)}'>"
        for name, value in fields.items()
    )
    return (
        f"<form method='post' action='{_e(action)}'>{hidden}"
        f"<button type='submit' id='{_e(button_id)}'>{_e(label)}</button></form>\n"
    )


def _price_text(price: JSON) -> str:
    recurring = price["recurring"]
    if recurring is None:
        return money(price["unit_amount"], price["currency"])
    if is_metered(price):
        return f"usage-based, billed each {recurring['interval']}"
    return f"{money(price['unit_amount'], price['currency'])} / {recurring['interval']}"


def _quantity(quantity: int | None) -> str:
    return "" if quantity is None else f" <span class='quantity'>x {_e(quantity)}</span>"


def _day(timestamp: int) -> str:
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return f"{moment:%B} {moment.day}, {moment.year}"


# Checkout ---------------------------------------------------------------------------------


def _checkout(state: StripeState, session_id: str) -> Page:
    with state.lock:
        session = state.checkout_sessions.get(session_id)
        if session is None:
            return _not_found()
        rows = "".join(
            f"<li class='line-item'><span class='product'>{_e(item['description'])}</span>"
            f" <span class='nickname'>{_e(item['price']['nickname'] or '')}</span>"
            f" <span class='amount'>{_e(_price_text(item['price']))}</span>"
            f"{_quantity(item['quantity'])}</li>\n"
            for item in state.checkout_details[session_id].line_items
        )
        total = money(session["amount_total"], session["currency"])
        body = (
            f"<ul class='line-items'>\n{rows}</ul>\n<p class='total'>Due today: {_e(total)}</p>\n"
        )
        if session["status"] == "open":
            label = "Subscribe" if session["mode"] == "subscription" else "Pay"
            body += _post_button(f"/checkout/{session_id}/pay", "pay", label, {})
            body += _post_button(f"/checkout/{session_id}/cancel", "cancel", "Cancel", {})
        elif session["status"] == "complete":
            body += "<p class='status'>Payment complete.</p>"
        else:
            body += "<p class='status'>This Checkout Session has expired.</p>"
    return Page(200, _document("Stripe Checkout (test double)", body))


def _checkout_pay(state: StripeState, session_id: str, form: dict[str, str]) -> Page:
    session = state.find(state.checkout_sessions, "checkout.session", session_id)
    if session["status"] == "open":
        state.complete_checkout(session_id)
    elif session["status"] != "complete":
        raise StripeDoubleError("This Checkout Session has expired.")
    target = session["success_url"] or f"/checkout/{session_id}"
    # Stripe fills in the template variable when it redirects, not when it stores the URL.
    return Page(303, location=target.replace("{CHECKOUT_SESSION_ID}", session_id))


def _checkout_cancel(state: StripeState, session_id: str, form: dict[str, str]) -> Page:
    session = state.find(state.checkout_sessions, "checkout.session", session_id)
    if session["status"] == "open":
        state.cancel_checkout(session_id)
    return Page(303, location=session["cancel_url"] or f"/checkout/{session_id}")


# The customer portal ----------------------------------------------------------------------


def _portal_subscriptions(state: StripeState, session: JSON) -> list[JSON]:
    return [
        s
        for s in state.subscriptions.values()
        if s["customer"] == session["customer"] and s["status"] != "canceled"
    ]


def _portal_subscription(state: StripeState, session_id: str, form: dict[str, str]) -> JSON:
    """The subscription a portal form names, which must be the portal customer's."""
    session = state.find(state.portal_sessions, "billing_portal.session", session_id)
    with state.lock:
        mine = _portal_subscriptions(state, session)
    wanted = form.get("subscription")
    found = next((s for s in mine if wanted in {None, s["id"]}), None)
    if found is None:
        raise StripeDoubleError("This customer has no such active subscription.", status=404)
    return found


def _portal_section(state: StripeState, session_id: str, subscription: JSON) -> str:
    licensed = [i for i in subscription["items"]["data"] if not is_metered(i["price"])]
    items = licensed or subscription["items"]["data"]
    current = items[0]["price"]
    name = state.product_name(current["product"])
    section = (
        f"<section class='subscription' data-id='{_e(subscription['id'])}'>\n"
        f"<h2 class='product'>{_e(name)}</h2>\n"
        f"<p class='price'><span class='nickname'>{_e(current['nickname'] or '')}</span> "
        f"{_e(_price_text(current))}</p>\n"
        f"<p class='status'>Status: {_e(subscription['status'])}</p>\n"
    )
    fields = {"subscription": subscription["id"]}
    if subscription["cancel_at_period_end"]:
        section += (
            f"<p class='cancel-notice'>Cancels on {_e(_day(subscription['cancel_at']))}</p>\n"
        )
        section += _post_button(
            f"/portal/{session_id}/renew", "renew-subscription", "Renew plan", fields
        )
    else:
        renews = _day(items[0]["current_period_end"])
        section += f"<p class='renewal'>Renews on {_e(renews)}</p>\n"
        section += _post_button(
            f"/portal/{session_id}/cancel", "cancel-subscription", "Cancel plan", fields
        )
    if licensed:
        for price in state.prices.values():
            switchable = (
                price["active"]
                and price["type"] == "recurring"
                and not is_metered(price)
                and price["id"] != current["id"]
                and price["currency"] == current["currency"]
            )
            if switchable:
                section += _post_button(
                    f"/portal/{session_id}/change",
                    f"switch-{price['id']}",
                    f"Switch to {state.product_name(price['product'])}",
                    {**fields, "price": price["id"]},
                )
    return section + "</section>\n"


def _portal(state: StripeState, session_id: str) -> Page:
    with state.lock:
        session = state.portal_sessions.get(session_id)
        if session is None:
            return _not_found()
        customer = state.customers[session["customer"]]
        sections = "".join(
            _portal_section(state, session_id, subscription)
            for subscription in _portal_subscriptions(state, session)
        )
    body = f"<p class='customer'>{_e(customer['email'] or customer['id'])}</p>\n"
    body += sections or "<p class='empty'>No active subscriptions.</p>\n"
    if session["return_url"]:
        body += f"<a id='return' href='{_e(session['return_url'])}'>Return to Lattice</a>\n"
    return Page(200, _document("Billing portal (test double)", body))


def _back_from_portal(state: StripeState, session_id: str) -> Page:
    session = state.portal_sessions[session_id]
    return Page(303, location=session["return_url"] or f"/portal/{session_id}")


def _portal_change(state: StripeState, session_id: str, form: dict[str, str]) -> Page:
    subscription = _portal_subscription(state, session_id, form)
    state.change_price(subscription["id"], form.get("price", ""))
    return _back_from_portal(state, session_id)


def _portal_cancel(state: StripeState, session_id: str, form: dict[str, str]) -> Page:
    subscription = _portal_subscription(state, session_id, form)
    state.cancel_subscription(subscription["id"], at_period_end=True)
    return _back_from_portal(state, session_id)


def _portal_renew(state: StripeState, session_id: str, form: dict[str, str]) -> Page:
    subscription = _portal_subscription(state, session_id, form)
    with state.mutation(), state.updating(subscription):
        state.schedule_cancel(subscription, cancel=False)
    return _back_from_portal(state, session_id)


# The hosted invoice page ------------------------------------------------------------------


def _invoice(state: StripeState, invoice_id: str) -> Page:
    with state.lock:
        invoice = state.invoices.get(invoice_id)
        if invoice is None:
            return _not_found()
        currency = invoice["currency"]
        rows = "".join(
            f"<li class='line'>{_e(line['description'])}: "
            f"{_e(money(line['amount'], currency))}</li>\n"
            for line in invoice["lines"]["data"]
        )
        body = (
            f"<p class='number'>Invoice {_e(invoice['number'])}</p>\n"
            f"<p class='status'>Status: {_e(invoice['status'])}</p>\n<ul>\n{rows}</ul>\n"
            f"<p class='total'>Amount due: {_e(money(invoice['amount_due'], currency))}</p>\n"
        )
        if invoice["invoice_pdf"]:
            body += (
                f"<a id='download-pdf' href='/invoice/{_e(invoice_id)}/pdf'>Download invoice</a>\n"
            )
        if invoice["status"] == "open":
            label = f"Pay {money(invoice['amount_remaining'], currency)}"
            body += _post_button(f"/invoice/{invoice_id}/pay", "pay-invoice", label, {})
    return Page(200, _document("Invoice (test double)", body))


def _invoice_pay(state: StripeState, invoice_id: str, form: dict[str, str]) -> Page:
    state.pay_invoice(invoice_id)
    return Page(303, location=f"/invoice/{invoice_id}")


def _invoice_pdf(state: StripeState, invoice_id: str) -> Page:
    with state.lock:
        invoice = state.invoices.get(invoice_id)
        if invoice is None or invoice["invoice_pdf"] is None:
            return _not_found()
        currency = invoice["currency"]
        lines = [
            f"Invoice {invoice['number']} (Stripe test double)",
            f"Date: {_day(invoice['created'])}",
            f"Status: {invoice['status']}",
            *(
                f"{line['description']}: {money(line['amount'], currency)}"
                for line in invoice["lines"]["data"]
            ),
            f"Total: {money(invoice['total'], currency)}",
        ]
    return Page(200, _pdf(lines), content_type="application/pdf")


def _pdf_text(line: str) -> str:
    ascii_only = line.encode("ascii", "replace").decode()
    return ascii_only.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _pdf(lines: list[str]) -> str:
    """A one-page PDF that shows ``lines``: enough for a browser or a test to open."""
    shown = "".join(f"({_pdf_text(line)}) Tj T* " for line in lines)
    stream = f"BT /F1 12 Tf 16 TL 72 720 Td {shown}ET"
    bodies = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            "/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
    ]
    document, offsets = "%PDF-1.4\n", []
    for number, body in enumerate(bodies, start=1):
        offsets.append(len(document))  # every character is ASCII: one byte each
        document += f"{number} 0 obj\n{body}\nendobj\n"
    xref = len(document)
    document += f"xref\n0 {len(bodies) + 1}\n0000000000 65535 f \n"
    document += "".join(f"{offset:010d} 00000 n \n" for offset in offsets)
    document += f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return document
