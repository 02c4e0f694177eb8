"""The token page in Chromium (issue 14): make a token, copy it with the Copy button (read
back from the clipboard), and run the page's curl command against the live server."""

from __future__ import annotations

import re
import shlex

import httpx
import pytest
from playwright.sync_api import expect

from apps.accounts.models import TOKEN_AREAS

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_new_token_is_copied_and_its_curl_command_answers(
    page, live_server, acme, alice, password
):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(alice.email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(f"{live_server.url}/")

    page.goto("/settings/tokens/")
    offered = page.locator("fieldset.scopes select")
    assert sorted(offered.evaluate_all("(all) => all.map((s) => s.name)")) == sorted(
        f"scope_{area}" for area in TOKEN_AREAS
    )
    expect(page.locator("fieldset.scopes")).to_contain_text("Deployments")
    expect(page.get_by_label("Call deployments")).not_to_be_checked()
    page.get_by_label("Name", exact=True).fill("laptop")
    page.get_by_label("Teams", exact=True).select_option("read")
    page.get_by_role("button", name="Create token").click()
    if "reauthenticate" in page.url:  # making a token may ask for the password again
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Confirm").click()

    secret = page.get_by_test_id("new-token").input_value()
    assert secret.startswith("lat_")
    page.get_by_test_id("copy-token").click()
    expect(page.get_by_test_id("copy-token")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret

    command = page.get_by_test_id("token-curl").text_content() or ""
    words = shlex.split(command)
    assert words[:3] == ["curl", "-H", f"Authorization: Bearer {secret}"]
    assert words[3] == f"{live_server.url}/api/v1/teams/"
    # Without navigator.clipboard (plain HTTP on a non-local address), Copy selects the text.
    page.evaluate("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    page.get_by_test_id("copy-curl").click()
    assert page.evaluate("window.getSelection().toString()") == command
    expect(page.locator("[data-copy-status]")).to_contain_text(re.compile("Copied|Selected"))

    header, _, value = words[2].partition(": ")
    answered = httpx.get(words[3], headers={header: value})  # what curl would send
    assert answered.status_code == 200, answered.text
    assert [t["slug"] for t in answered.json()["results"]] == ["acme"]
