"""The machine picker tells the truth about capacity (issue 14): on an installation whose only
host is CPU-only, a GPU type reads "No host here offers this type" and a start of it is
refused with the reason, while a CPU type reads available with how many fit now. The image
field shows only for the custom template."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from apps.core.tenancy import team_scope
from apps.notebooks.models import Notebook, NotebookSession
from tests.notebook_fixtures import make_host

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page, live_server, user, password) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{live_server.url}/")


def test_the_picker_shows_availability_honestly_and_a_gpu_start_is_refused(
    page, live_server, acme, alice, password, fake_runtime, catalogue
):
    make_host(cpus=16, memory_gib=64)  # the only host: CPU-only
    sign_in(page, live_server, alice, password)

    page.goto("/t/acme/notebooks/")
    page.get_by_role("link", name="New notebook").click()
    page.wait_for_url("**/t/acme/notebooks/new/")

    picker = page.get_by_test_id("machine-picker")
    h100 = picker.get_by_test_id("machine-h100-80gb")
    expect(h100.get_by_test_id("availability")).to_have_text("No host here offers this type")
    expect(h100).to_contain_text("GPU memory unknown")
    expect(picker.get_by_test_id("machine-m4000").get_by_test_id("availability")).to_have_text(
        "No host here offers this type"
    )
    small = picker.get_by_test_id("machine-cpu-small")
    expect(small.get_by_test_id("availability")).to_have_text("Available now · 8 free")
    expect(small).to_contain_text("2 vCPU · 8 GiB RAM")
    expect(small).to_contain_text("$0.04/h")

    # The image field only for the custom template.
    form = page.get_by_test_id("create-form")
    image = form.get_by_label("Image (custom template only)")
    expect(image).to_be_hidden()
    form.get_by_label("Template", exact=True).select_option(value="custom")
    expect(image).to_be_visible()
    form.get_by_label("Template", exact=True).select_option(value="scipy")
    expect(image).to_be_hidden()

    form.get_by_label("Name", exact=True).fill("Big model")
    h100.get_by_role("radio").check()
    form.get_by_role("button", name="Create notebook").click()
    page.wait_for_url("**/t/acme/notebooks/*/")

    page.get_by_test_id("start").click()

    refusal = page.get_by_text("No host here offers H100 80 GB")
    expect(refusal).to_be_visible()
    expect(refusal).to_contain_text("Available now:")
    expect(refusal).to_contain_text("CPU small")
    with team_scope(acme):
        notebook = Notebook.objects.get(name="Big model")
        assert notebook.status == "stopped"
        assert not NotebookSession.objects.filter(notebook=notebook).exists()
