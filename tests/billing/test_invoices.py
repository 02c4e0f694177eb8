"""A team's invoices: read from Stripe (the test double) for the team's own customer,
shown on the billing page and by the API, to owners and admins only; when Stripe does not
answer, the page still renders and says so, and the API answers 503."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest
import stripe

from apps.accounts.tokens import token_create
from apps.billing.invoices import PAGE_SIZE, money
from apps.billing.models import BillingAccount
from tests.billing_fixtures import subscribe

pytestmark = pytest.mark.django_db

PAGE = "/t/{}/billing/"
API = "/api/v1/teams/{}/billing/invoices/"


def _invoice_lists(double) -> list[dict]:
    return [
        params
        for method, path, params in double.requests
        if (method, path) == ("GET", "/v1/invoices")
    ]


def _customer(team) -> str:
    return BillingAccount.objects.for_team(team).get(team=team).stripe_customer_id


class TestTheTeamsInvoices:
    def test_the_owner_sees_the_paid_invoice_with_its_amount_and_links(
        self, stripe_double, acme, alice, client
    ):
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        assert stripe_double.webhook_statuses == [200, 200, 200]  # invoice.paid among them
        (invoice,) = stripe_double.invoices.values()
        client.force_login(alice)

        page = client.get(PAGE.format(acme.slug))

        assert page.status_code == 200
        html = page.content.decode()
        assert 'data-testid="invoice-list"' in html
        assert invoice["number"] in html
        assert "$8.00" in html
        assert ">Paid</span>" in html
        assert f'href="{stripe_double.url}/invoice/{invoice["id"]}"' in html
        assert f'href="{stripe_double.url}/invoice/{invoice["id"]}/pdf"' in html
        assert "No invoices yet." not in html

    def test_the_api_lists_it_in_the_smallest_unit_with_iso_dates(
        self, stripe_double, acme, alice, client
    ):
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        (invoice,) = stripe_double.invoices.values()
        client.force_login(alice)

        response = client.get(API.format(acme.slug))

        assert response.status_code == 200
        body = response.json()
        assert body["has_more"] is False
        (listed,) = body["invoices"]
        assert listed["id"] == invoice["id"]
        assert listed["number"] == invoice["number"]
        assert (listed["status"], listed["currency"]) == ("paid", "usd")
        assert (listed["total"], listed["amount_due"], listed["amount_paid"]) == (800, 800, 800)
        assert listed["amount_remaining"] == 0
        assert datetime.fromisoformat(listed["created"]).timestamp() == invoice["created"]
        # The first invoice pays for the subscription's first period.
        item = stripe_double.subscriptions[
            invoice["parent"]["subscription_details"]["subscription"]
        ]
        period = item["items"]["data"][0]
        assert (
            datetime.fromisoformat(listed["period_start"]).timestamp()
            == period["current_period_start"]
        )
        assert (
            datetime.fromisoformat(listed["period_end"]).timestamp() == period["current_period_end"]
        )
        assert listed["hosted_invoice_url"] == f"{stripe_double.url}/invoice/{invoice['id']}"
        assert listed["invoice_pdf"] == f"{stripe_double.url}/invoice/{invoice['id']}/pdf"

    def test_newest_first_and_drafts_are_left_out(self, stripe_double, acme, alice, client):
        subscription = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        first = stripe_double.subscriptions[subscription]["latest_invoice"]
        failed = stripe_double.fail_payment(subscription)
        draft = stripe_double.draft_invoice(subscription)
        client.force_login(alice)

        body = client.get(API.format(acme.slug)).json()
        html = client.get(PAGE.format(acme.slug)).content.decode()

        assert [i["id"] for i in body["invoices"]] == [failed, first]
        assert body["invoices"][0]["status"] == "open"
        assert body["invoices"][0]["amount_remaining"] == 800
        assert draft not in html
        assert f'data-invoice="{failed}"' in html
        assert ">Open</span>" in html
        assert "$8.00 due" in html

    def test_a_team_sees_only_its_own_customers_invoices(
        self, stripe_double, acme, alice, globex, charlie, client
    ):
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        subscribe(stripe_double, team=globex, actor=charlie, plan="growth")
        theirs = [
            i["id"] for i in stripe_double.invoices.values() if i["customer"] == _customer(globex)
        ]
        assert len(theirs) == 1
        client.force_login(alice)

        body = client.get(API.format(acme.slug)).json()
        html = client.get(PAGE.format(acme.slug)).content.decode()

        assert [i["total"] for i in body["invoices"]] == [800]
        assert theirs[0] not in str(body)
        assert theirs[0] not in html
        assert "$39.00" not in html
        assert {p["customer"] for p in _invoice_lists(stripe_double)} == {_customer(acme)}

    def test_at_most_a_page_is_asked_for(self, stripe_double, acme, alice, client):
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        client.force_login(alice)

        client.get(API.format(acme.slug))

        (asked,) = _invoice_lists(stripe_double)
        assert asked["limit"] == str(PAGE_SIZE)

    def test_a_team_without_a_customer_has_none_and_stripe_is_not_asked(
        self, stripe_double, acme, alice, client
    ):
        client.force_login(alice)

        page = client.get(PAGE.format(acme.slug))
        response = client.get(API.format(acme.slug))

        assert page.status_code == 200
        assert "No invoices yet." in page.content.decode()
        assert response.json() == {"invoices": [], "has_more": False}
        assert _invoice_lists(stripe_double) == []

    def test_a_token_needs_the_billing_area(self, stripe_double, acme, alice, client):
        _, billing = token_create(user=alice, name="billing", scopes=["billing:read"])
        _, teams = token_create(user=alice, name="teams", scopes=["teams:read"])

        allowed = client.get(API.format(acme.slug), HTTP_AUTHORIZATION=f"Bearer {billing}")
        refused = client.get(API.format(acme.slug), HTTP_AUTHORIZATION=f"Bearer {teams}")

        assert allowed.status_code == 200
        assert refused.status_code == 403
        assert "invoices" in allowed.json()
        assert set(refused.json()) == {"error"}  # the refusal, and no invoice


class TestWhoSeesThem:
    def test_a_member_gets_403(self, stripe_double, acme, alice, bob, client):
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        client.force_login(bob)

        assert client.get(PAGE.format(acme.slug)).status_code == 403
        response = client.get(API.format(acme.slug))
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "permission_denied"
        assert _invoice_lists(stripe_double) == []

    def test_an_outsider_gets_404(self, stripe_double, acme, alice, globex, charlie, client):
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        client.force_login(charlie)

        assert client.get(PAGE.format(acme.slug)).status_code == 404
        response = client.get(API.format(acme.slug))
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        assert _invoice_lists(stripe_double) == []


@pytest.fixture(params=["down", "refusing"])
def stripe_failing(request, stripe_double, settings):
    """Stripe unreachable (the double stopped), or answering with an error (a wrong key)."""
    if request.param == "down":
        stripe_double.stop()
    else:
        settings.STRIPE_SECRET_KEY = "sk_test_not_the_right_one"
    return request.param


class TestWhenStripeFails:
    @pytest.fixture
    def subscribed(self, stripe_double, acme, alice):
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")

    def test_the_page_still_renders_and_says_so(
        self, subscribed, stripe_failing, acme, alice, client, caplog
    ):
        client.force_login(alice)

        with caplog.at_level(logging.WARNING, logger="apps.billing.invoices"):
            page = client.get(PAGE.format(acme.slug))

        assert page.status_code == 200
        html = page.content.decode()
        assert "Invoices could not be loaded from Stripe just now" in html
        assert 'data-testid="current-plan">Pro<' in html  # the rest of the page is there
        assert "No invoices yet." not in html
        assert any(
            "did not list the invoices of team acme" in r.getMessage() for r in caplog.records
        )

    def test_the_api_answers_503(self, subscribed, stripe_failing, acme, alice, client):
        client.force_login(alice)

        response = client.get(API.format(acme.slug))

        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "billing_unavailable"
        assert error["message"].startswith("Invoices could not be loaded from Stripe just now")


class TestWithBillingOff:
    def test_there_are_none_and_stripe_is_not_asked(
        self, stripe_double, acme, alice, client, settings
    ):
        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        settings.LATTICE_BILLING = False
        client.force_login(alice)

        page = client.get(PAGE.format(acme.slug)).content.decode()
        response = client.get(API.format(acme.slug))

        assert "Billing is off" in page
        assert 'data-testid="invoices"' not in page
        assert response.status_code == 200
        assert response.json() == {"invoices": [], "has_more": False}
        assert _invoice_lists(stripe_double) == []


class TestTheDoublesInvoices:
    """What Lattice leans on, as Stripe does it: the customer, limit and status filters,
    drafts without number, page or PDF, and a PDF to download."""

    @pytest.fixture
    def stripe_client(self, stripe_double, settings):
        return stripe.StripeClient(
            settings.STRIPE_SECRET_KEY,
            base_addresses={"api": stripe_double.url},
            max_network_retries=0,
        )

    def test_filters_and_limit(self, stripe_double, acme, alice, globex, charlie, stripe_client):
        subscription = subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        subscribe(stripe_double, team=globex, actor=charlie, plan="pro")
        failed = stripe_double.fail_payment(subscription)
        draft = stripe_double.draft_invoice(subscription)
        customer = _customer(acme)

        mine = stripe_client.v1.invoices.list(params={"customer": customer})
        one = stripe_client.v1.invoices.list(params={"customer": customer, "limit": 1})
        drafts = stripe_client.v1.invoices.list(params={"customer": customer, "status": "draft"})

        assert [i.id for i in mine.data][:2] == [draft, failed]
        assert {i.customer for i in mine.data} == {customer}
        assert len(mine.data) == 3
        assert ([i.id for i in one.data], one.has_more) == ([draft], True)
        assert [i.id for i in drafts.data] == [draft]
        with pytest.raises(stripe.InvalidRequestError) as refused:
            stripe_client.v1.invoices.list(params={"status": "overdue"})
        assert refused.value.param == "status"
        with pytest.raises(stripe.InvalidRequestError):
            stripe_client.v1.invoices.list(params={"limit": 101})

    def test_a_draft_has_no_number_page_or_pdf_until_finalized(
        self, stripe_double, acme, alice, stripe_client
    ):
        subscription = subscribe(stripe_double, team=acme, actor=alice, plan="pro")

        draft = stripe_client.v1.invoices.retrieve(stripe_double.draft_invoice(subscription))

        assert draft.status == "draft"
        assert (draft.number, draft.hosted_invoice_url, draft.invoice_pdf) == (None, None, None)
        assert draft.status_transitions.finalized_at is None
        assert draft.automatically_finalizes_at == draft.created + 3600
        assert "invoice.created" in [e["type"] for e in stripe_double.events]

    def test_a_finalized_invoice_has_a_pdf(self, stripe_double, acme, alice):
        import httpx

        subscribe(stripe_double, team=acme, actor=alice, plan="pro")
        (invoice,) = stripe_double.invoices.values()

        pdf = httpx.get(invoice["invoice_pdf"])
        page = httpx.get(invoice["hosted_invoice_url"])

        assert pdf.status_code == 200
        assert pdf.headers["Content-Type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF-1.4")
        assert pdf.content.rstrip().endswith(b"%%EOF")
        assert invoice["number"].encode() in pdf.content
        assert "/pdf" in page.text


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (800, "usd", "$8.00"),
        (123456, "eur", "€1,234.56"),
        (-500, "gbp", "-£5.00"),
        (1200, "jpy", "1,200 JPY"),
        (1500, "kwd", "1.500 KWD"),
        (999, "chf", "9.99 CHF"),
    ],
)
def test_amounts_are_shown_in_their_currencys_units(amount, currency, shown):
    assert money(amount, currency) == shown
