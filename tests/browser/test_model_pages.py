"""The model pages in real Chromium against the live server.

Alice makes a model, chooses a folder, a format and metadata, and uploads it with the
datasets uploader on the models API's routes until "Version 1 is ready"; the version's
page lists what was inside the folder and shows the metadata as a table. The same folder
again is version 1 (nothing sent). On a model's page she points an alias at a version,
moves it, and removes it. At 390 px a version's page and a diff fit the screen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from apps.models.models import ModelAlias, ModelVersion
from tests.browser.conftest import log_in
from tests.browser.test_narrow_pages import HEIGHT, WIDTH, fits
from tests.model_fixtures import make_model_version

if TYPE_CHECKING:
    from apps.models.models import Model

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHUNK = 64 * 1024
FOLDER = {
    "model.joblib": bytes(range(256)) * 600,  # 150 KiB: 3 chunks
    "predict.py": b"def setup():\n    pass\n\n\ndef predict(**inputs):\n    return inputs\n",
    "config/labels.json": b'["setosa", "versicolor", "virginica"]\n',
}


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def test_alice_uploads_a_folder_as_a_model_version_and_sees_it(
    page, live_server, acme, alice, password, media, tmp_path
):
    folder = write_folder(tmp_path / "iris-model", FOLDER)
    puts: list[str] = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, alice.email, password)

    page.goto("/t/acme/models/")
    page.get_by_label("Name").fill("Iris")
    page.get_by_label("Licence").fill("Apache-2.0")
    page.get_by_role("button", name="Create model").click()
    expect(page.get_by_text("Iris is ready: upload its first version.")).to_be_visible()

    page.get_by_label("Folder").set_input_files(folder)
    expect(page.get_by_test_id("selection")).to_contain_text("3 files")
    page.get_by_label("Message").fill("First fit")
    page.get_by_label("Format").select_option("python")
    metadata = {"metrics": {"accuracy": 0.97}, "parameters": {"C": 1.0}}
    page.get_by_label("Metadata (JSON, optional)").fill(json.dumps(metadata))
    page.get_by_role("button", name="Start upload").click()

    expect(page.get_by_test_id("done")).to_contain_text("Version 1 is ready", timeout=30_000)
    assert len(puts) == 3 + 1 + 1  # each chunk once, to the model's upload
    assert all("/api/v1/teams/acme/model-uploads/" in url for url in puts), puts
    version = ModelVersion.objects.for_team(acme).get()
    assert (version.number, version.status, version.format) == (1, "ready", "python")
    assert (version.message, version.metadata) == ("First fit", metadata)

    page.get_by_role("link", name="See its files").click()
    expect(page.get_by_role("heading", name="Iris v1")).to_be_visible()
    listed = page.get_by_test_id("file-list").locator("tbody tr td:first-child").all_inner_texts()
    assert listed == sorted(FOLDER)
    metrics = page.get_by_test_id("metadata-metrics")
    expect(metrics.get_by_role("row", name="accuracy 0.97")).to_be_visible()
    expect(page.get_by_test_id("servers")).to_have_text("No deployment serves this version.")
    with page.expect_download() as download:
        page.get_by_role("link", name="config/labels.json").click()
    assert Path(download.value.path()).read_bytes() == FOLDER["config/labels.json"]

    # The same folder again: that version is the answer, and nothing is sent.
    puts.clear()
    page.goto("/t/acme/models/iris/upload/")
    page.get_by_label("Folder").set_input_files(folder)
    page.get_by_role("button", name="Start upload").click()
    expect(page.get_by_test_id("done")).to_contain_text(
        "These files are version 1 already", timeout=30_000
    )
    assert puts == []
    assert ModelVersion.objects.for_team(acme).count() == 1
    assert errors == []


@pytest.fixture
def iris(acme, alice, media) -> Model:
    make_model_version(acme, alice, "Iris", {"model.joblib": b"one"}, message="first")
    second = make_model_version(acme, alice, "Iris", {"model.joblib": b"two"}, message="second")
    return second.model


def test_alice_points_an_alias_moves_it_and_removes_it(
    page, live_server, acme, alice, password, iris
):
    log_in(page, alice.email, password)
    page.goto(f"/t/acme/models/{iris.slug}/")
    form = page.get_by_test_id("alias-form")

    form.get_by_label("Alias").fill("production")
    form.get_by_label("Version").select_option("1")
    form.get_by_role("button", name="Point the alias at this version").click()
    expect(page.get_by_text("production now names version 1.")).to_be_visible()
    aliases = page.get_by_test_id("alias-list")
    expect(aliases.get_by_role("row", name="production v1")).to_be_visible()

    form.get_by_label("Alias").fill("production")
    form.get_by_label("Version").select_option("2")
    form.get_by_role("button", name="Point the alias at this version").click()
    expect(page.get_by_text("production now names version 2.")).to_be_visible()
    expect(aliases.get_by_role("row", name="production v2")).to_be_visible()
    assert ModelAlias.objects.for_team(acme).get().version.number == 2
    # The version's page says so too.
    page.get_by_test_id("version-list").get_by_role("link", name="v2").click()
    expect(page.get_by_test_id("alias-badge")).to_have_text("production")

    page.go_back()
    # Removing asks first (a <details>, reachable by keyboard): one Remove does nothing yet.
    page.get_by_test_id("remove-production").focus()
    page.keyboard.press("Enter")
    confirm = page.get_by_role("button", name="Yes, remove the alias production")
    expect(
        page.get_by_text("production names v2; deployments following it stop resolving.")
    ).to_be_visible()
    assert ModelAlias.objects.for_team(acme).exists()
    confirm.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_text("The alias production is removed.")).to_be_visible()
    expect(page.get_by_text("No aliases.")).to_be_visible()
    assert not ModelAlias.objects.for_team(acme).exists()


def test_a_refused_alias_keeps_its_version_and_the_fields_line_up(
    page, live_server, acme, alice, password, iris
):
    log_in(page, alice.email, password)
    page.goto(f"/t/acme/models/{iris.slug}/")
    form = page.get_by_test_id("alias-form")
    form.get_by_label("Alias").fill("Bad Alias!")
    form.get_by_label("Version").select_option("1")
    form.get_by_role("button", name="Point the alias at this version").click()

    form = page.get_by_test_id("alias-form")
    expect(form.locator("#alias_name_error")).to_be_visible()
    expect(form.get_by_label("Version")).to_have_value("1")
    expect(form.get_by_label("Alias")).to_have_value("Bad Alias!")
    # The select keeps its own height beside the field with an error under it.
    alias_box = form.get_by_label("Alias").bounding_box()
    select_box = form.get_by_label("Version").bounding_box()
    assert alias_box
    assert select_box
    assert abs(select_box["y"] - alias_box["y"]) < 2
    assert select_box["height"] < alias_box["height"] * 1.5
    # The top says where the problem is; reloading the address goes back to the model.
    expect(
        page.get_by_test_id("form-problem").get_by_role("link", name="see Aliases")
    ).to_be_visible()
    response = page.goto(page.url)
    assert response is not None
    assert response.ok
    assert page.url.endswith(f"/t/acme/models/{iris.slug}/")


def test_the_latest_version_is_marked_and_reached_by_latest_or_an_alias(
    page, live_server, acme, alice, password, iris
):
    from apps.models.services.aliases import alias_set

    first = ModelVersion.objects.for_team(acme).get(number=1)
    alias_set(team=acme, actor=alice, model=iris, name="production", version=first)
    log_in(page, alice.email, password)
    page.goto(f"/t/acme/models/{iris.slug}/")
    versions = page.get_by_test_id("version-list")
    expect(versions.get_by_role("row", name="v2 latest")).to_be_visible()

    page.goto(f"/t/acme/models/{iris.slug}/v/production/")
    assert page.url.endswith(f"/t/acme/models/{iris.slug}/v/1/")
    note = page.get_by_test_id("newer-version")
    expect(note).to_contain_text("A newer version exists: v2")
    note.get_by_role("link", name="v2").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("v2")
    expect(page.get_by_test_id("latest-badge")).to_be_visible()
    page.goto(f"/t/acme/models/{iris.slug}/v/latest/")
    assert page.url.endswith(f"/t/acme/models/{iris.slug}/v/2/")


def test_a_version_and_a_diff_fit_390_px(browser, live_server, acme, alice, password, media):
    long_path = "checkpoints/very/deeply/nested/folder/with-a-long-file-name-0001.safetensors"
    name = "A classifier of cat photographs from the whole neighbourhood, 2019 to 2026"
    make_model_version(acme, alice, name, {long_path: b"x" * 2000, "predict.py": b"1"})
    second = make_model_version(
        acme,
        alice,
        name,
        {long_path: b"y" * 3000, "README.md": b"Cats.\n"},
        metadata={
            "metrics": {"accuracy_on_the_held_out_quarter_of_the_photographs": 0.9731},
            "notes": {"training": ["a long list", {"of": "nested things" * 8}]},
        },
        io_schema={"inputs": {"image": "a JPEG of a cat, base64, at most 4 MiB" * 3}},
    )
    slug = second.model.slug
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": WIDTH, "height": HEIGHT}
    )
    page = context.new_page()
    log_in(page, alice.email, password)
    faults: list[str] = []

    for path in (
        f"/t/acme/models/{slug}/v/2/",
        f"/t/acme/models/{slug}/diff/?from=1&to=2",
        f"/t/acme/models/{slug}/",
    ):
        response = page.goto(path)
        assert response is not None
        assert response.status == 200, path
        faults += fits(page, path)

    assert not faults, "\n".join(faults)
    context.close()


def test_a_big_versions_files_page_by_200_and_its_lineage_outlives_a_deleted_dataset(
    page, live_server, acme, alice, password, media
):
    """A version of 450 files shows them 200 a page; the dataset it was made with is
    deleted and its lineage still says "Flowers v1 (deleted)"; a model tuned from it is
    listed among its children."""
    from apps.datasets.services.datasets import dataset_delete
    from apps.models.models import ModelFile
    from tests.dataset_fixtures import make_version

    flowers = make_version(acme, "Flowers", {"a.csv": b"1,2"})
    big = make_model_version(acme, alice, "Big", {"a": b"1"}, dataset_versions=[flowers.pk])
    blob = ModelFile.objects.for_team(acme).get(version=big).blob
    ModelFile.objects.for_team(acme).bulk_create(
        ModelFile(team=acme, version=big, path=f"d/f{i:05d}", blob=blob, size=1) for i in range(449)
    )
    make_model_version(acme, alice, "Big tuned", {"b": b"2"}, parent=big.pk)
    dataset_delete(team=acme, actor=alice, dataset=flowers.dataset, confirmation="Flowers")
    log_in(page, alice.email, password)

    page.goto("/t/acme/models/big/v/1/")
    pages = page.get_by_test_id("file-pages")
    expect(pages).to_contain_text("Files 1\u2013200 of 450")
    expect(page.get_by_test_id("file-list").locator("tbody tr")).to_have_count(200)
    pages.get_by_role("link", name="Next").click()
    expect(pages).to_contain_text("Files 201\u2013400 of 450")
    expect(page.get_by_test_id("file-list").get_by_role("link", name="d/f00199")).to_be_visible()

    expect(page.get_by_test_id("lineage-deleted")).to_have_text("Flowers v1 (deleted)")
    page.get_by_test_id("children").get_by_role("link", name="Big tuned v1").click()
    expect(page).to_have_url(f"{live_server.url}/t/acme/models/big-tuned/v/1/")
