"""The upload page stays responsive while it hashes a large file (issue 14, defect 4).

Alice chooses a 96 MiB file. While the page computes its SHA-256 a heartbeat on the page's
main thread records the longest gap between its ticks: hashing happens in a Web Worker, so the
page never stalls for more than a frame or two. Pause, pressed mid-hash, takes effect at once
(the hash stops moving); Cancel stops the hashing; Resume (or Start again) goes on, and the
server ends with the file's right digest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any

import pytest
from django.core.files.storage import default_storage
from playwright.sync_api import expect

from apps.datasets import services
from apps.datasets.models import DatasetVersion, VersionFile
from tests.browser.conftest import log_in

log = logging.getLogger(__name__)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHUNK = 16 * 1024 * 1024  # the media fixture sets it: 6 chunks for the file below
SIZE = 96 * 1024 * 1024
# What the page's own work may cost while it hashes: no task on its main thread of 100 ms or
# more (a frame is 16 ms; the browser calls a task of 50 ms a long one), and long tasks in all
# under a fifth of the time. Hashing 96 MiB on the main thread (as before) ran a long task per
# piece read, back to back.
LONGEST_TASK_MS = 100
BLOCKED_SHARE = 0.2
# The heartbeat's longest gap is what a person feels, but a busy machine (tests run on two
# shared cores) stretches it too, whatever the page does: it is bounded loosely.
LONGEST_GAP_MS = 1000

MEASURE = """() => {
    // While the page hashes ("hashing" in #dataset-upload's data-state, marked the moment it
    // changes): the browser's long tasks on the main thread, and a heartbeat every 10 ms.
    const root = document.getElementById("dataset-upload");
    const hashing = () => root.dataset.state === "hashing";
    const spans = [];
    let since = hashing() ? performance.now() : null;
    new MutationObserver(() => {
        const now = performance.now();
        if (hashing() && since === null) { since = now; }
        if (!hashing() && since !== null) { spans.push([since, now]); since = null; }
    }).observe(root, {attributes: true, attributeFilter: ["data-state"]});
    const tasks = [];
    new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) { tasks.push([entry.startTime, entry.duration]); }
    }).observe({type: "longtask"});
    const beat = {longest: 0, ticks: 0};
    let last = performance.now();
    setInterval(() => {
        const now = performance.now();
        if (hashing()) { beat.longest = Math.max(beat.longest, now - last); beat.ticks += 1; }
        last = now;
    }, 10);
    window.measured = () => {
        const all = since === null ? spans : [...spans, [since, performance.now()]];
        const overlaps = ([start, length]) => all.some(([a, b]) => start < b && start + length > a);
        const during = tasks.filter(overlaps);
        return {
            hashing: all.reduce((sum, [a, b]) => sum + b - a, 0),
            tasks: during.length,
            longestTask: Math.max(0, ...during.map(([, length]) => length)),
            taskTime: during.reduce((sum, [, length]) => sum + length, 0),
            longestGap: beat.longest,
            ticks: beat.ticks,
        };
    };
}"""


@pytest.fixture
def large_file(tmp_path: Any) -> tuple[Any, str]:
    path = tmp_path / "large.bin"
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(SIZE // (8 * 1024 * 1024)):
            piece = os.urandom(8 * 1024 * 1024)
            digest.update(piece)
            out.write(piece)
    return path, digest.hexdigest()


def hashed(page: Any) -> int:
    return int(page.get_by_test_id("hash-progress").evaluate("b => b.value"))


def responsive(page: Any) -> None:
    seen = page.evaluate("window.measured()")
    log.info(
        "while hashing for %.0f ms: %d long tasks on the main thread, %.0f ms in all, the"
        " longest %.0f ms; heartbeat: longest gap %.0f ms over %d ticks",
        seen["hashing"],
        seen["tasks"],
        seen["taskTime"],
        seen["longestTask"],
        seen["longestGap"],
        seen["ticks"],
    )
    assert seen["ticks"] > 10, seen  # the heartbeat ran while the page hashed
    assert seen["longestTask"] < LONGEST_TASK_MS, seen
    assert seen["taskTime"] < BLOCKED_SHARE * seen["hashing"], seen
    assert seen["longestGap"] < LONGEST_GAP_MS, seen


def test_the_page_stays_responsive_while_hashing_a_large_file(
    page, live_server, acme, alice, password, media, large_file
):
    path, digest = large_file
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    dataset = services.dataset_create(team=acme, actor=alice, name="Large")
    log_in(page, alice.email, password)
    page.goto(f"/t/{acme.slug}/datasets/{dataset.slug}/upload/")
    page.get_by_label("Or files").set_input_files(path)
    expect(page.get_by_test_id("selection")).to_contain_text("1 file, 96.0 MB")

    page.evaluate(MEASURE)
    page.get_by_role("button", name="Start upload").click()
    expect(page.get_by_test_id("status")).to_contain_text("Checking the files")
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=hash-progress]').value > {SIZE // 3}",
        timeout=60_000,
    )
    responsive(page)

    # Pause mid-hash: it takes effect at once, and the hash stands still while paused.
    began = time.monotonic()
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_test_id("status")).to_contain_text("Paused", timeout=1_000)
    pause_s = time.monotonic() - began
    page.wait_for_timeout(300)  # the piece in hand (2 MiB) is finished and counted
    at_pause = hashed(page)
    page.wait_for_timeout(600)
    assert hashed(page) == at_pause < SIZE
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("status")).to_contain_text("Checking the files")
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=hash-progress]').value > {at_pause}",
        timeout=30_000,
    )

    # Cancel while hashing: it stops at once and Start is offered again.
    began = time.monotonic()
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_test_id("status")).to_contain_text("Cancelled", timeout=1_000)
    cancel_s = time.monotonic() - began
    at_cancel = hashed(page)
    page.wait_for_timeout(600)
    assert hashed(page) == at_cancel  # nothing hashes on in the background
    log.info(
        "pause took %.2f s, cancel %.2f s (the click to the status saying so)", pause_s, cancel_s
    )
    assert pause_s < 1, pause_s
    assert cancel_s < 1, cancel_s

    # Start again: hashed from the beginning, sent, and made into a version.
    page.get_by_role("button", name="Start upload").click()
    expect(page.get_by_test_id("done")).to_contain_text("Version 1 is ready", timeout=120_000)
    responsive(page)

    # The server holds the file under the digest the worker computed.
    version = DatasetVersion.objects.for_team(acme).get()
    (entry,) = VersionFile.objects.for_team(acme).filter(version=version).select_related("blob")
    assert (entry.path, entry.blob.sha256, entry.blob.size) == ("large.bin", digest, SIZE)
    stored = hashlib.sha256()
    with default_storage.open(entry.blob.storage_key) as blob:
        for piece in iter(lambda: blob.read(8 * 1024 * 1024), b""):
            stored.update(piece)
    assert stored.hexdigest() == digest
    assert errors == []
