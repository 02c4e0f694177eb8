"""Uploading a dataset version from the browser, in real Chromium against the live server.

Alice makes a dataset, chooses a folder, and watches it hashed and sent in checked chunks
until "Version 1 is ready"; the dataset's page lists what was inside the folder, and a file
and the archive download with the right bytes. Then uploads that stop: paused and the page
reloaded, or the connection dropped; choosing the same files again (or pressing Resume)
sends only the chunks Lattice does not hold yet. Chunks are 64 KiB here, so a few small
files make many of them.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from apps.datasets import services
from apps.datasets.models import DatasetVersion, Upload, UploadChunk
from tests.browser.conftest import log_in

if TYPE_CHECKING:
    from apps.datasets.models import Dataset

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHUNK = 64 * 1024
CHUNK_URL = re.compile(r"/blobs/(?P<sha>[0-9a-f]{64})/chunks/(?P<index>\d+)/$")


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def chunks_of(files: dict[str, bytes]) -> set[tuple[str, int]]:
    """Every (sha256, index) an upload of ``files`` into an empty Lattice sends."""
    return {
        (hashlib.sha256(data).hexdigest(), index)
        for data in files.values()
        for index in range(-(-len(data) // CHUNK))
    }


def chunk_of(url: str) -> tuple[str, int]:
    found = CHUNK_URL.search(url)
    assert found, url
    return found["sha"], int(found["index"])


def stored_chunks(team: Any) -> set[tuple[str, int]]:
    return set(UploadChunk.objects.for_team(team).values_list("blob__sha256", "index"))


def wait_until(page: Any, condition: Any, *, seconds: float = 15) -> None:
    """Let the browser run (and Playwright deliver route and request events) until
    ``condition()`` holds."""
    for _ in range(int(seconds * 20)):
        if condition():
            return
        page.wait_for_timeout(50)
    raise AssertionError("timed out waiting")


@pytest.fixture
def photos() -> dict[str, bytes]:
    cat = os.urandom(4 * CHUNK + 100)
    return {
        "cat.bin": cat,  # 5 chunks
        "copy-of-cat.bin": cat,  # the same bytes: sent once
        "notes/readme.txt": b"Cats, mostly asleep.\n",  # 1 chunk
        "notes/deeper/dog.bin": os.urandom(2 * CHUNK),  # 2 chunks
        "empty.txt": b"",  # nothing to send
    }


@pytest.fixture
def big() -> dict[str, bytes]:
    # 3 files of 7 chunks each: 21 chunks.
    return {f"part-{n}.bin": os.urandom(6 * CHUNK + 7) for n in range(3)}


def upload_page(page: Any, dataset: Dataset) -> None:
    page.goto(f"/t/{dataset.team.slug}/datasets/{dataset.slug}/upload/")


def test_alice_uploads_a_folder_and_downloads_a_file(
    page, live_server, acme, alice, password, media, photos, tmp_path
):
    folder = write_folder(tmp_path / "photos", photos)
    puts: list[str] = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    # A script the CSP refused, or one that threw, shows here.
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, alice.email, password)

    page.goto("/t/acme/datasets/")
    page.get_by_label("Name").fill("Cat photos")
    page.get_by_label("Description").fill("Cats, mostly asleep.")
    page.get_by_label("Licence").fill("CC-BY-4.0")
    page.get_by_role("button", name="Create dataset").click()
    expect(page.get_by_text("Cat photos is ready: upload its first version.")).to_be_visible()

    # Playwright gives a webkitdirectory input a whole folder, as the browser's picker does.
    page.get_by_label("Folder").set_input_files(folder)
    expect(page.get_by_test_id("selection")).to_contain_text("5 files")
    page.get_by_label("Message").fill("The first photos")
    # Every value the total bar takes on the way, to see the progress move.
    page.get_by_test_id("total-progress").evaluate(
        """bar => {
            window.seenProgress = [];
            new MutationObserver(() => window.seenProgress.push(bar.value))
                .observe(bar, {attributes: true, attributeFilter: ["value"]});
        }"""
    )
    page.get_by_role("button", name="Start upload").click()

    expect(page.get_by_test_id("done")).to_contain_text("Version 1 is ready", timeout=30_000)
    total = sum(len(data) for data in photos.values())
    value, maximum = page.get_by_test_id("total-progress").evaluate("b => [b.value, b.max]")
    assert value == maximum == total
    assert page.get_by_test_id("hash-progress").evaluate("b => b.value === b.max")
    expect(page.get_by_test_id("total-text")).to_contain_text("(100%)")
    seen = page.evaluate("window.seenProgress")
    assert any(0 < v < total for v in seen), seen  # it moved while the chunks went up
    expect(page.get_by_test_id("file-rows").locator("tr")).to_have_count(5)
    assert (
        page.get_by_test_id("file-rows")
        .locator("progress")
        .evaluate_all("bars => bars.every(b => b.value === b.max)")
    )
    # Each chunk once; the copy and the empty file cost nothing.
    assert sorted(chunk_of(u) for u in puts) == sorted(chunks_of(photos))

    version = DatasetVersion.objects.for_team(acme).get()
    assert (version.number, version.status, version.message) == (1, "ready", "The first photos")
    assert version.file_count == 5
    assert version.total_size == total

    # The dataset's page lists what was inside the folder, without the folder's name.
    page.get_by_role("link", name="See its files").click()
    expect(page.get_by_role("heading", name="Files of version 1")).to_be_visible()
    listed = page.get_by_test_id("file-list").locator("tbody tr td:first-child").all_inner_texts()
    assert listed == sorted(photos)

    with page.expect_download() as download:
        page.get_by_role("link", name="notes/deeper/dog.bin").click()
    assert Path(download.value.path()).read_bytes() == photos["notes/deeper/dog.bin"]
    assert download.value.suggested_filename == "dog.bin"

    with page.expect_download() as archive:
        page.get_by_role("link", name="Download version 1 (.tar)").click()
    with tarfile.open(fileobj=io.BytesIO(Path(archive.value.path()).read_bytes())) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert members == {f"cat-photos-v1/{p}": data for p, data in photos.items()}
    assert errors == []


def test_a_paused_upload_resumes_after_a_reload_sending_only_what_is_missing(
    page, live_server, acme, alice, password, media, big, tmp_path
):
    dataset = services.dataset_create(team=acme, actor=alice, name="Big")
    folder = write_folder(tmp_path / "big", big)
    # Five chunks go through; the next ones are held (on their way) until released.
    passed: list[str] = []
    held: list[Any] = []

    def hold_after_five(route: Any) -> None:
        if route.request.method == "PUT" and len(passed) >= 5:
            held.append(route)
            return
        if route.request.method == "PUT":
            passed.append(route.request.url)
        route.continue_()

    page.route("**/chunks/**", hold_after_five)
    log_in(page, alice.email, password)
    upload_page(page, dataset)
    page.get_by_label("Folder").set_input_files(folder)
    page.get_by_role("button", name="Start upload").click()

    wait_until(page, lambda: len(held) == 3)  # three in flight, as many as the page sends
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_test_id("status")).to_contain_text("Pausing")
    for route in held:
        route.continue_()
    expect(page.get_by_test_id("status")).to_contain_text("Paused")
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    page.unroute("**/chunks/**")

    # Lattice holds the five, and the three that were on their way when Pause was pressed.
    upload = Upload.objects.for_team(acme).get()
    received = stored_chunks(acme)
    assert received == {chunk_of(u) for u in passed} | {chunk_of(r.request.url) for r in held}
    assert len(received) == 8
    missing = {(sha, i) for sha, idx in services.upload_missing(upload).items() for i in idx}
    assert missing == chunks_of(big) - received

    # A reload (or a closed tab): the page remembers the open upload.
    puts: list[str] = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    page.reload()
    expect(page.get_by_test_id("pending-upload")).to_contain_text("did not finish")
    page.get_by_label("Folder").set_input_files(folder)
    page.get_by_role("button", name="Start upload").click()
    expect(page.get_by_test_id("done")).to_contain_text("Version 1 is ready", timeout=30_000)

    # Only what was missing went up, each chunk once, into the same upload.
    assert sorted(chunk_of(u) for u in puts) == sorted(missing)
    upload.refresh_from_db()
    assert upload.status == Upload.Status.COMPLETE
    assert Upload.objects.for_team(acme).count() == 1
    version = DatasetVersion.objects.for_team(acme).get()
    assert (version.number, version.status, version.file_count) == (1, "ready", 3)
    expect(page.get_by_test_id("pending-upload")).to_be_hidden()
    assert page.evaluate("Object.keys(localStorage).length") == 0


def test_a_dropped_connection_is_retried_then_resumed_with_the_button(
    page, live_server, acme, alice, password, media, big, tmp_path
):
    dataset = services.dataset_create(team=acme, actor=alice, name="Big")
    folder = write_folder(tmp_path / "big", big)
    tries: list[str] = []
    passed: list[str] = []

    # The very first chunk fails once (a blip: retried); after four more, the line is down.
    def flaky(route: Any) -> None:
        if route.request.method != "PUT":
            route.continue_()
            return
        tries.append(route.request.url)
        if len(tries) == 1 or len(passed) >= 4:
            route.abort("connectionreset")
            return
        passed.append(route.request.url)
        route.continue_()

    page.route("**/chunks/**", flaky)
    log_in(page, alice.email, password)
    upload_page(page, dataset)
    page.get_by_label("Folder").set_input_files(folder)
    page.get_by_role("button", name="Start upload").click()

    # Three tries a chunk, then the page stops and says why; nothing is lost.
    expect(page.get_by_test_id("error")).to_have_text(
        "The connection to Lattice was lost.", timeout=30_000
    )
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    assert tries.count(tries[0]) >= 2  # the blip was retried
    assert stored_chunks(acme) == {chunk_of(u) for u in passed}
    failed = [u for u in tries if u not in passed]
    assert max(failed.count(u) for u in failed) == 3  # three tries, no more

    page.unroute("**/chunks/**")
    puts: list[str] = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("done")).to_contain_text("Version 1 is ready", timeout=30_000)

    assert sorted(chunk_of(u) for u in puts) == sorted(
        chunks_of(big) - {chunk_of(u) for u in passed}
    )
    assert DatasetVersion.objects.for_team(acme).get().number == 1


def test_the_same_folder_again_is_identical_and_makes_a_version_only_when_asked(
    page, live_server, acme, alice, password, media, photos, tmp_path
):
    dataset = services.dataset_create(team=acme, actor=alice, name="Twice")
    folder = write_folder(tmp_path / "twice", photos)
    log_in(page, alice.email, password)
    upload_page(page, dataset)
    page.get_by_label("Folder").set_input_files(folder)
    page.get_by_role("button", name="Start upload").click()
    expect(page.get_by_test_id("done")).to_contain_text("Version 1 is ready", timeout=30_000)

    upload_page(page, dataset)
    page.get_by_label("Folder").set_input_files(folder)
    page.get_by_role("button", name="Start upload").click()

    expect(page.get_by_test_id("error")).to_contain_text(
        "These files are identical to v1", timeout=30_000
    )
    expect(page.get_by_test_id("done")).to_be_hidden()
    ready = DatasetVersion.objects.for_team(acme).filter(status="ready")
    assert list(ready.values_list("number", flat=True)) == [1]
    # Asked explicitly, the same upload makes version 2.
    page.get_by_label("Make a new version even if it is identical to the latest").check()
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_test_id("done")).to_contain_text("Version 2 is ready", timeout=30_000)
    assert sorted(ready.values_list("number", flat=True)) == [1, 2]
