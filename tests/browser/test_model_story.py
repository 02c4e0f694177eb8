"""The models story end to end, on the real Docker runtime and the Scientific Python image:
a person makes a notebook, attaches the team's iris dataset version, starts it, and in
JupyterLab puts the example's train.py (examples/models/iris/) into the notebook's files and
runs it on the mounted CSV; then, on the notebook's page, saves the folder it wrote as a new
model "Iris". The save is the real one: ``agent.save_folder`` on the local host's queue (the
embedded worker, as the notebook's start runs), reading the folder out of the container and
sending it to this server with its ticket. Version 1's page holds the folder's files, and
its lineage names the notebook and the dataset version, each a link.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import expect
from sklearn.datasets import load_iris

from apps.core.tenancy import team_scope
from apps.models.models import ModelVersion
from tests.browser.conftest import (
    JUPYTER_MS,
    READY_MS,
    _remove_notebook_containers,
    _remove_volumes,
    _wait_for_status,
    create_notebook,
    jupyter_api,
    log_in,
    run_in_new_notebook,
)
from tests.dataset_fixtures import make_version

pytestmark = [pytest.mark.browser, pytest.mark.docker]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "models" / "iris"
# The cell prints this, then model.joblib's sha256 and where train.py read its data.
MARKER = "model.joblib sha256"


def iris_csv() -> bytes:
    """Scikit-learn's iris as the CSV train.py reads (its columns and species' names)."""
    bundled = load_iris()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width", "species"])
    for row, target in zip(bundled.data.tolist(), bundled.target, strict=True):
        writer.writerow([*row, str(bundled.target_names[target])])
    return out.getvalue().encode()


@pytest.fixture
def storage(settings: Any, tmp_path: Path, asgi_live_server: str) -> None:
    """Blobs in a local folder; the host's agent downloads the dataset's and sends the
    model's through this server (signed links, the save's ticket), as any host does."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.LATTICE_DATASET_CACHE = tmp_path / "cache"
    settings.LATTICE_INTERNAL_URL = asgi_live_server
    settings.LATTICE_UPLOAD_CHUNK_BYTES = 64 * 1024


TRAIN_CELL = f"""\
import hashlib, json, pathlib, subprocess, sys
done = subprocess.run(
    [sys.executable, "/notebooks/iris/train.py", "--out", "/notebooks/iris/iris-model"],
    capture_output=True, text=True,
)
print(done.stdout, done.stderr)
folder = pathlib.Path("/notebooks/iris/iris-model")
print(sorted(p.name for p in folder.iterdir()))
print("training_data", json.loads((folder / "metrics.json").read_text())["training_data"])
print("{MARKER}", hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest())
"""


def train_in_jupyterlab(page: Any, notebook: Any) -> str:
    """From the notebook's page, open JupyterLab; put the example's files into
    /notebooks/iris through Jupyter's contents API (as its file browser's upload does), make
    a notebook whose cell runs train.py, and run that cell with JupyterLab's Run button
    (run_in_new_notebook). Returns model.joblib's sha256 as the cell printed it."""
    with page.context.expect_page() as opened:
        page.get_by_test_id("open-jupyter").click()
    lab = opened.value
    lab.set_default_timeout(JUPYTER_MS)
    lab.wait_for_load_state()
    base = f"/nb/{notebook.pk}"
    folder = jupyter_api(lab, "PUT", f"{base}/api/contents/iris", {"type": "directory"})
    assert folder["status"] in (200, 201), folder["text"]
    for name in ("train.py", "predict.py"):
        body = {"type": "file", "format": "text", "content": (EXAMPLE / name).read_text()}
        put = jupyter_api(lab, "PUT", f"{base}/api/contents/iris/{name}", body)
        assert put["status"] in (200, 201), put["text"]
    run_in_new_notebook(lab, base, "Train iris.ipynb", TRAIN_CELL, shows=MARKER)
    printed = "\n".join(lab.locator(".jp-OutputArea-output").all_inner_texts())
    lab.close()
    assert "['metrics.json', 'model.joblib', 'predict.py']" in printed, printed
    assert "training_data /datasets/iris/iris.csv" in printed, printed
    found = re.search(rf"{MARKER} ([0-9a-f]{{64}})", printed)
    assert found, printed
    return found[1]


def save_as_new_model(page: Any) -> None:
    """On the notebook's page (as it was when the notebook started: the form appears with
    the status), save iris/iris-model as a new model, Iris, and wait for version 1."""
    form = page.get_by_test_id("save-model-form")
    form.get_by_label("Folder").fill("iris/iris-model")
    form.get_by_label("New model's name").fill("Iris")
    form.get_by_label("Message (optional)").fill("trained in JupyterLab")
    form.get_by_role("button", name="Save as a model version").click()
    save = page.get_by_test_id("save")
    expect(save).to_contain_text("/notebooks/iris/iris-model")
    # The page asks again every second while the host's agent reads the folder out of the
    # container and sends it (generous: the worker and the server share 2 busy cores).
    try:
        expect(save.get_by_test_id("save-version")).to_have_text("version 1", timeout=120_000)
    except AssertionError as exc:
        raise AssertionError(f"the save did not end: {save.inner_text()!r}") from exc
    assert save.get_attribute("data-state") == "ready"
    save.get_by_test_id("save-version").click()
    page.wait_for_url(f"**{reverse('models:version', args=['acme', 'iris', 1])}")


def test_a_model_trained_in_jupyterlab_is_saved_with_its_lineage(
    asgi_page: Any,
    asgi_live_server: str,
    storage: None,
    local_host: Any,
    unique_ids: None,
    docker_client: Any,
    acme: Any,
    alice: Any,
    password: str,
    catalogue: dict[str, Any],
) -> None:
    from apps.notebooks.models import TeamNotebookSettings

    # The team's dataset: version 1 holds the iris CSV (seen at /datasets/iris/).
    dataset_version = make_version(acme, "Iris", {"iris.csv": iris_csv()})
    page = asgi_page
    made: list[Any] = []
    try:
        log_in(page, alice.email, password)
        page.goto("/t/acme/notebooks/")
        notebook = create_notebook(page, acme, "Iris trainer", catalogue["cpu-small"])
        made.append(notebook)
        datasets = page.get_by_test_id("datasets")
        datasets.get_by_label("Dataset version").select_option(value=str(dataset_version.pk))
        datasets.get_by_role("button", name="Attach").click()
        expect(page.get_by_test_id("mount")).to_contain_text("/datasets/iris")
        expect(page.get_by_test_id("save-model-form")).to_be_hidden()

        page.get_by_test_id("start").click()
        page.wait_for_load_state()
        _wait_for_status(page, "Running", READY_MS)
        model_sha = train_in_jupyterlab(page, notebook)
        save_as_new_model(page)

        # Version 1's page: the folder's files, and where they came from.
        files = page.get_by_test_id("file-list")
        paths = files.locator("tbody tr td:first-child").all_inner_texts()
        assert sorted(paths) == ["metrics.json", "model.joblib", "predict.py"]
        joblib_row = files.locator("tbody tr", has_text="model.joblib")
        expect(joblib_row.locator("code")).to_have_attribute("title", model_sha)
        with team_scope(acme):
            version = ModelVersion.objects.get(model__slug="iris", number=1)
            session = notebook.sessions.latest("pk")
            used_versions = list(version.dataset_versions.all())
        assert (version.source, version.source_id) == (ModelVersion.Source.NOTEBOOK, session.pk)
        assert used_versions == [dataset_version]
        lineage = page.get_by_test_id("lineage")
        source = lineage.get_by_test_id("source").get_by_role("link")
        expect(source).to_have_text(f"Iris trainer, session {session.pk}")
        notebook_page = reverse("notebooks:detail", args=["acme", notebook.pk])
        expect(source).to_have_attribute("href", notebook_page)
        used = lineage.get_by_test_id("lineage-datasets").get_by_role("link")
        expect(used).to_have_text("Iris v1")
        dataset_page = reverse("datasets:detail", args=["acme", "iris"])
        expect(used).to_have_attribute("href", f"{dataset_page}?version=1")
        # No metrics: a save does not read metrics.json (one of its files) into metadata.
    finally:
        _remove_notebook_containers(docker_client, [n.pk for n in made])
        volumes = [n.volume for n in made]
        with team_scope(acme):
            volumes += [s.storage_volume for s in TeamNotebookSettings.objects.all()]
        _remove_volumes(docker_client, volumes)
