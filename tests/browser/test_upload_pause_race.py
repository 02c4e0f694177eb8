"""Pause on the upload page while the files are checked (issue 14, review of defect 4).

The page hashes files in a Web Worker. Pause pressed as the worker finishes the last piece of
the last file used to lose the race: the worker's "done" was already on its way, so the page
went on to send the upload while it said Paused, and the worker kept the pause, so the next
upload sat at "Checking the files…" for ever. The race is made certain here: the page's
"done" for the file is held (the worker has finished) while Pause is pressed, then let go.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from apps.datasets import services
from apps.datasets.models import DatasetVersion
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Hold the worker's answer for a whole file ("done" without a chunk's buffer) once asked to
# (window.holdDone = true), until the test lets it go (window.release()).
HOLD_DONE = """
(() => {
    const Real = window.Worker;
    window.holdDone = false;
    window.held = false;
    window.filesAsked = 0;
    window.Worker = class extends Real {
        postMessage(message, ...rest) {
            if (message && message.kind === "file") { window.filesAsked += 1; }
            return super.postMessage(message, ...rest);
        }
        addEventListener(type, listener, options) {
            if (type !== "message") { return super.addEventListener(type, listener, options); }
            return super.addEventListener(type, (event) => {
                const data = event.data || {};
                if (window.holdDone && data.kind === "done" && !data.buffer) {
                    window.holdDone = false;
                    window.held = true;
                    window.release = () => listener(event);
                    return;
                }
                listener(event);
            }, options);
        }
    };
})();
"""


def focused(page: Any) -> str | None:
    return page.evaluate("document.activeElement && document.activeElement.dataset.testid")


def upload_page(page: Any, live_server: Any, team: Any, alice: Any, password: str) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.add_init_script(HOLD_DONE)
    dataset = services.dataset_create(team=team, actor=alice, name="Tiny")
    log_in(page, alice.email, password)
    page.goto(f"/t/{team.slug}/datasets/{dataset.slug}/upload/")
    page.errors = errors


def choose_and_hold(page: Any, tmp_path: Any, name: str, body: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(body)
    page.get_by_label("Or files").set_input_files(path)
    page.evaluate("window.holdDone = true")
    page.get_by_role("button", name="Start upload").click()
    page.wait_for_function("() => window.held === true")


def test_pause_as_the_last_piece_is_hashed_holds_the_upload_until_resume(
    page, live_server, acme, alice, password, media, tmp_path
):
    upload_page(page, live_server, acme, alice, password)
    choose_and_hold(page, tmp_path, "a.txt", b"first file\n")

    # The worker has finished the only file; its answer is on its way as Pause is pressed.
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_test_id("status")).to_contain_text("Paused while checking the files")
    assert focused(page) == "resume"  # the pressed button went; focus is on what undoes it
    page.evaluate("window.release()")
    page.wait_for_timeout(1_000)

    # Still paused: nothing was sent while the page said so.
    expect(page.get_by_test_id("status")).to_contain_text("Paused while checking the files")
    assert not DatasetVersion.objects.for_team(acme).exists()
    assert page.evaluate("document.getElementById('dataset-upload').dataset.state") == (
        "hash-paused"
    )

    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("done")).to_contain_text("Version 1 is ready", timeout=30_000)

    # The worker kept no pause: the next upload is checked and sent.
    path = tmp_path / "b.txt"
    path.write_bytes(b"second file\n")
    page.get_by_label("Or files").set_input_files(path)
    page.get_by_role("button", name="Start upload").click()
    expect(page.get_by_test_id("done")).to_contain_text("Version 2 is ready", timeout=30_000)
    assert page.errors == []


def test_pause_as_one_file_finishes_holds_the_next_file_until_resume(
    page, live_server, acme, alice, password, media, tmp_path
):
    upload_page(page, live_server, acme, alice, password)
    paths = []
    for name, body in (("a.txt", b"first file\n"), ("b.txt", b"second file\n")):
        paths.append(tmp_path / name)
        paths[-1].write_bytes(body)
    page.get_by_label("Or files").set_input_files(paths)
    page.evaluate("window.holdDone = true")
    page.get_by_role("button", name="Start upload").click()
    page.wait_for_function("() => window.held === true")

    # The first file is done as Pause is pressed: the pause reaches a worker hashing
    # nothing, and the page must not hand it the second file until Resume.
    page.get_by_role("button", name="Pause").click()
    page.evaluate("window.release()")
    page.wait_for_timeout(1_000)
    assert page.evaluate("window.filesAsked") == 1
    expect(page.get_by_test_id("status")).to_contain_text("Paused while checking the files")

    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("done")).to_contain_text("Version 1 is ready", timeout=30_000)
    assert page.evaluate("window.filesAsked") == 2
    assert DatasetVersion.objects.for_team(acme).get().file_count == 2
    assert page.errors == []


def test_cancel_while_checking_moves_focus_to_start(
    page, live_server, acme, alice, password, media, tmp_path
):
    upload_page(page, live_server, acme, alice, password)
    choose_and_hold(page, tmp_path, "a.txt", b"first file\n")

    page.get_by_role("button", name="Cancel").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("status")).to_contain_text("Cancelled")
    assert focused(page) == "start"
    page.evaluate("window.release && window.release()")
    page.wait_for_timeout(300)
    expect(page.get_by_test_id("status")).to_contain_text("Cancelled")
    assert page.errors == []
