"""Upgrading in a real browser: a Free team's owner is refused a GPU, follows the upgrade
link, pays on the Checkout stand-in, and is back on the billing page on Pro at once (the
return page applies the Checkout session); Stripe's later webhooks change nothing.

The Stripe test double serves the API and the hosted Checkout page, and posts its
signed webhooks to the live server, as Stripe would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from apps.billing.models import StripeEvent
from apps.devtools.offline_billing import settings_for, start_double
from apps.notebooks.services import notebook_create
from tests.billing_fixtures import WEBHOOK_PATH, plan_slug
from tests.browser.conftest import log_in
from tests.factories import GPUDeviceFactory
from tests.notebook_fixtures import make_host

if TYPE_CHECKING:
    from collections.abc import Iterator

    from apps.devtools.stripe_double import StripeDouble

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def live_double(live_server: Any, settings: Any, billing_plans: None) -> Iterator[StripeDouble]:
    double = start_double(webhook_url=f"{live_server.url}{WEBHOOK_PATH}")
    for name, value in settings_for(double).items():
        setattr(settings, name, value)
    yield double
    double.stop()


def test_free_owner_upgrades_to_start_a_gpu(
    page, live_server, live_double, acme, alice, password, catalogue, fake_runtime
):
    notebook = notebook_create(
        team=acme, actor=alice, name="GPU work", template="pytorch", machine_type=catalogue["p5000"]
    )
    log_in(page, alice.email, password)

    # Free does not include the P5000: refused, with a way to upgrade.
    page.goto(f"/t/{acme.slug}/notebooks/{notebook.pk}/")
    page.get_by_role("button", name="Start", exact=True).click()
    refusal = page.get_by_text("Quadro P5000 is not included in the Free plan.")
    expect(refusal).to_be_visible()
    page.get_by_role("link", name="See plans and upgrade").click()
    expect(page.get_by_test_id("current-plan")).to_have_text("Free")

    # Checkout on the stand-in. Its webhooks are held back: the page the browser returns to
    # shows the new plan at once, from the session id Stripe filled into the return URL.
    live_double.hold_webhooks = True
    page.get_by_test_id("upgrade-pro").click()
    page.wait_for_url(f"{live_double.url}/checkout/**")
    session_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    expect(page.get_by_text("Lattice Pro")).to_be_visible()
    page.locator("#pay").click()
    page.wait_for_url(
        f"{live_server.url}/t/{acme.slug}/billing/?checkout=success&session_id={session_id}"
    )
    expect(page.get_by_test_id("current-plan")).to_have_text("Pro")
    expect(page.locator("#checkout-result")).to_contain_text("is now on Pro")
    expect(page.get_by_test_id("upgrade-pro")).to_have_count(0)
    assert live_double.deliveries == []

    # Then Stripe's webhooks arrive, verified, and each is applied once, to the same plan.
    live_double.hold_webhooks = False
    for event in list(live_double.events):
        live_double.resend(event["id"])
    assert [status for _, status in live_double.deliveries] == [200, 200, 200]
    assert set(StripeEvent.objects.values_list("outcome", flat=True)) == {"processed"}
    assert plan_slug(acme) == "pro"

    # Now the GPU machine type is allowed and a host here offers it: the start is accepted.
    host = make_host(cpus=64, memory_gib=256)
    GPUDeviceFactory.create(host=host, name=catalogue["p5000"].gpu_model)
    page.goto(f"/t/{acme.slug}/notebooks/{notebook.pk}/")
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.get_by_text("Starting GPU work.")).to_be_visible()
    expect(page.get_by_text("is not included in")).to_have_count(0)
