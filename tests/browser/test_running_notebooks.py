"""What a Gradient/Kaggle user expects to see of what runs (issue 14): the dashboard lists
the running notebook with its uptime and cost so far; the notebook list offers Start, Stop
and Open on each row."""

from __future__ import annotations

import pytest

from tests.browser.conftest import log_in
from tests.factories import NotebookFactory, running_notebook

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_dashboard_shows_the_running_notebook_with_uptime_and_cost(
    page, live_server, acme, alice, password, settings
):
    settings.LATTICE_BILLING = True
    running_notebook(acme, "Training run", minutes=30, hourly_price="0.60")
    log_in(page, alice.email, password)

    section = page.get_by_role("region", name="Running notebooks")
    row = section.get_by_role("listitem").filter(has_text="Training run")
    assert row.get_by_role("link", name="Acme").is_visible()
    assert row.get_by_test_id("uptime").inner_text() == "30\xa0minutes"
    # Thirty minutes at $0.60 an hour.
    assert row.get_by_test_id("cost").inner_text() == "$0.30"
    assert row.get_by_test_id("cost").is_visible()
    spend = page.get_by_role("region", name="Spend this period")
    assert spend.get_by_text("$0.30").is_visible()


def test_the_notebook_list_offers_start_stop_and_open_on_each_row(
    page, live_server, acme, bob, password, settings
):
    settings.LATTICE_BILLING = True
    running = running_notebook(acme, "Training run", minutes=30, hourly_price="0.60")
    NotebookFactory.create(team=acme, name="Analysis")
    log_in(page, bob.email, password)

    page.goto("/t/acme/notebooks/")

    table = page.get_by_test_id("notebook-list")
    live = table.get_by_role("row").filter(has_text="Training run")
    assert live.get_by_text("Running").is_visible()
    assert live.get_by_test_id("uptime").inner_text() == "30\xa0minutes"
    assert live.get_by_test_id("cost").inner_text() == "$0.30"
    opener = live.get_by_role("link", name="Open Training run in JupyterLab")
    assert opener.get_attribute("href") == f"/nb/{running.pk}/"
    assert live.get_by_role("button", name="Stop Training run").is_visible()
    assert live.get_by_role("button", name="Start Training run").count() == 0

    idle = table.get_by_role("row").filter(has_text="Analysis")
    assert idle.get_by_text("Stopped").is_visible()
    assert idle.get_by_role("link", name="Open Analysis in JupyterLab").count() == 0
    assert idle.get_by_role("button", name="Start Analysis").is_visible()
    live.get_by_role("button", name="Stop Training run").click()

    page.get_by_text("Stopping Training run; its files are kept.").wait_for()
