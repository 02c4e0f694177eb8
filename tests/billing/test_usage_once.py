"""The usage page and ``GET .../billing/usage/`` show one reading of the period's usage
(apps.billing.selectors.billing_usage): the same period, totals and rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.billing.services import machine_price_set
from apps.notebooks.models import NotebookSession
from apps.notebooks.services import notebook_create

pytestmark = pytest.mark.django_db


def test_the_page_and_the_api_show_the_same_usage(stripe_double, acme, alice, catalogue, client):
    machine = catalogue["cpu-large"]
    now = timezone.now()
    machine_price_set(
        machine_type=machine, hourly_price=Decimal("36.00"), effective_from=now - timedelta(days=40)
    )
    notebook = notebook_create(
        team=acme, actor=alice, name="Once", template="scipy", machine_type=machine
    )
    NotebookSession.objects.for_team(acme).create(
        team=acme,
        notebook=notebook,
        machine_type=machine,
        started_by=alice,
        template="scipy",
        image="lattice/notebook",
        jupyter_token="t",
        status="stopped",
        started_at=now - timedelta(minutes=30),
        ended_at=now - timedelta(minutes=20),
    )
    client.force_login(alice)

    page = client.get(f"/t/{acme.slug}/billing/usage/").context
    body = client.get(f"/api/v1/teams/{acme.slug}/billing/usage/").json()

    def rows(totals):
        return [(t.name, t.seconds, f"{t.cost:.4f}") for t in totals]

    def api_rows(totals):
        return [(t["name"], t["seconds"], t["cost"]) for t in totals]

    assert (body["seconds"], body["cost"]) == (600, "6.0000")
    assert (page["total_seconds"], f"{page['total_cost']:.4f}") == (600, "6.0000")
    assert (
        rows(page["by_machine"])
        == api_rows(body["by_machine_type"])
        == [("CPU large", 600, "6.0000")]
    )
    assert (
        rows(page["by_member"])
        == api_rows(body["by_member"])
        == [("alice@example.com", 600, "6.0000")]
    )
    assert [d["day"] for d in page["days"]] == [t["name"] for t in body["by_day"]]
    assert page["period_start"].isoformat().replace("+00:00", "Z") == body["period_start"]
