"""The deployment pages in real Chromium on the ASGI server (websockets included).

Bob opens a deployment's page: the four charts draw (uPlot, vendored) from the snapshot
the websocket sends at once; while nobody has called it the page says "No requests yet".
Then requests are counted and the beat's push (apps.deployments.live.publish_metrics)
reaches the open page over the websocket: the note goes and a line per revision appears,
with no script refused by the CSP. The replicas' states, events and log lines on the same
stream reach the page too. From a model version's page, Deploy opens the create
form with that version chosen and its model's name filled in.

The gateway's apps.deployments.metrics (series, recent_requests) is another helper's
module, replaced with what it answers (tests/deployments/pages_fixtures.series_of); the
lead rewires this at merge.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.core.stream import stream_publish
from apps.core.tenancy import team_scope
from apps.deployments import live, metrics
from apps.deployments.models import Deployment, Replica, Revision
from tests.browser.conftest import log_in
from tests.deployments.pages_fixtures import make_deployment, series_of

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def gateway(monkeypatch: Any) -> dict[str, Any]:
    answers: dict[str, Any] = {"since_steps_ago": None}

    def series(deployment: Deployment, *, seconds: int = 900, step: int = 5) -> dict[str, Any]:
        return series_of(deployment, since_steps_ago=answers["since_steps_ago"])

    monkeypatch.setattr(metrics, "series", series)
    monkeypatch.setattr(metrics, "recent_requests", lambda _deployment: [])
    return answers


def watch_errors(page: Any) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def test_the_charts_draw_from_the_stream_and_follow_its_pushes(
    asgi_page, acme, alice, bob, password, catalogue, gateway
):
    deployment = make_deployment(acme, alice, catalogue["cpu-small"])
    with team_scope(acme):
        serving = Revision.objects.get(deployment=deployment, number=2)
    page = asgi_page
    errors = watch_errors(page)
    log_in(page, bob.email, password)
    page.goto(f"/t/acme/deployments/{deployment.pk}/")

    for name in ("rps", "status", "latency", "load"):
        chart = page.get_by_test_id(f"chart-{name}")
        expect(chart.locator("canvas")).to_have_count(1)
        expect(chart).to_have_attribute("data-drawn", "true")
    expect(page.get_by_test_id("charts-note")).to_have_text(
        "No requests yet: the charts fill in as requests come."
    )
    expect(page.get_by_test_id("chart-latency").locator(".u-legend")).to_contain_text("p99")
    expect(page.get_by_test_id("chart-load").locator(".u-legend")).to_contain_text("ready replicas")
    first_at = page.locator("#deployment").get_attribute("data-charts-at")
    assert first_at

    # Requests come; the beat's push reaches the open page.
    gateway["since_steps_ago"] = 6
    with team_scope(acme):
        Deployment.objects.filter(pk=deployment.pk).update(last_request_at=timezone.now())
    assert live.publish_metrics() == 1
    expect(page.get_by_test_id("charts-note")).to_be_hidden()
    expect(page.get_by_test_id("chart-rps").locator(".u-legend")).to_contain_text(
        f"r{serving.number}"
    )
    expect(page.get_by_test_id("connection")).to_have_text("")

    # The controller's messages on the same stream: a replica's state, a new replica, an
    # event, and the replicas' log lines.
    with team_scope(acme):
        loading = Replica.objects.get(deployment=deployment, status=Replica.Status.LOADING)
    replica = {"type": "replica", "deployment": deployment.pk, "revision": serving.pk}
    stream_publish(deployment.stream, {**replica, "replica": loading.pk, "status": "ready"})
    stream_publish(deployment.stream, {**replica, "replica": 999, "status": "placing"})
    stream_publish(
        deployment.stream,
        {"type": "event", "kind": "scaled", "message": "Scaled r2 up to 3 replicas.", "at": ""},
    )
    stream_publish(deployment.stream, {"type": "logs", "lines": ["model loaded in 1.8 s"]})
    row = page.get_by_test_id(f"replica-{loading.pk}")
    expect(row.get_by_test_id("replica-state")).to_have_text("Ready")
    expect(page.get_by_test_id("replica-999")).to_contain_text("Placing")
    expect(page.get_by_test_id("replica-999")).to_contain_text("r2")
    expect(page.get_by_test_id("event-list")).to_contain_text("Scaled r2 up to 3 replicas.")
    expect(page.get_by_test_id("log-panel")).to_contain_text("model loaded in 1.8 s")
    assert not [e for e in errors if "Content Security Policy" in e or "uPlot" in e], errors
    assert not [e for e in errors if "Uncaught" in e], errors


def test_deploy_from_a_model_version_opens_the_form_filled_in(
    page, live_server, acme, alice, bob, password, catalogue, gateway
):
    deployment = make_deployment(acme, alice, catalogue["cpu-small"])
    with team_scope(acme):
        version = Revision.objects.get(deployment=deployment, number=2).model_version
    errors = watch_errors(page)
    log_in(page, bob.email, password)
    page.goto(f"/t/acme/models/{version.model.slug}/v/{version.number}/")
    expect(page.get_by_test_id("servers")).to_contain_text("Churn API (r2)")
    page.get_by_role("link", name="Deploy", exact=True).click()
    page.wait_for_url(f"**/t/acme/deployments/new/?version={version.pk}")
    expect(page.get_by_label("Name", exact=True)).to_have_value("Churn")
    expect(page.get_by_label("Model version")).to_have_value(str(version.pk))
    expect(page.get_by_test_id("create-form")).to_be_visible()
    # The team's navigation leads to the deployments too.
    page.get_by_role("navigation", name="Team").get_by_role("link", name="Deployments").click()
    expect(page.get_by_test_id("deployment-row-" + str(deployment.pk))).to_be_visible()
    assert not errors, errors
