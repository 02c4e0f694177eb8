"""The datasets story end to end: upload a folder in the browser, attach version 1 to a
notebook, start it on the real Docker runtime (the agent downloading the blobs through
signed links), open JupyterLab, and in a JupyterLab terminal list /datasets/<name> and
fail to write there (the mount is read-only)."""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import expect

from apps.core.tenancy import team_scope
from apps.datasets.models import DatasetVersion
from tests.browser.conftest import (
    JUPYTER_MS,
    READY_MS,
    _remove_notebook_containers,
    _remove_volumes,
    _wait_for_status,
    create_notebook,
    jupyter_api,
    lab_origin,
    log_in,
)
from tests.browser.test_dataset_upload import write_folder

if TYPE_CHECKING:
    from pathlib import Path

    from apps.notebooks.models import Notebook

pytestmark = [pytest.mark.browser, pytest.mark.docker]


@pytest.fixture
def storage(settings: Any, tmp_path: Path, asgi_live_server: str) -> None:
    """Blobs in a local folder, sent in small chunks; the host's agent downloads them
    through this server's signed links, as any host does (no storage credentials)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.LATTICE_DATASET_CACHE = tmp_path / "cache"
    settings.LATTICE_INTERNAL_URL = asgi_live_server
    settings.LATTICE_UPLOAD_CHUNK_BYTES = 64 * 1024


def test_a_folder_uploaded_in_the_browser_is_read_only_in_jupyterlab(
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
    tmp_path: Path,
) -> None:
    files = {
        "readme.txt": b"Cats, mostly asleep.\n",
        "images/cat-1.bin": os.urandom(150_000),
        "images/cat-2.bin": os.urandom(70_000),
    }
    folder = write_folder(tmp_path / "cats", files)
    page = asgi_page
    created: list[Notebook] = []
    try:
        log_in(page, alice.email, password)

        # Upload the folder as version 1 of a new dataset.
        page.goto("/t/acme/datasets/")
        page.get_by_label("Name").fill("Cats")
        page.get_by_role("button", name="Create dataset").click()
        page.get_by_label("Folder").set_input_files(folder)
        expect(page.get_by_test_id("selection")).to_contain_text("3 files")
        page.get_by_role("button", name="Start upload").click()
        expect(page.get_by_test_id("done")).to_contain_text("Version 1 is ready", timeout=60_000)
        with team_scope(acme):
            version = DatasetVersion.objects.get(dataset__slug="cats", number=1)

        # A notebook, with version 1 attached at /datasets/cats.
        page.goto("/t/acme/notebooks/")
        notebook = create_notebook(page, acme, "Reads cats", catalogue["cpu-small"])
        created.append(notebook)
        datasets = page.get_by_test_id("datasets")
        datasets.get_by_label("Dataset version").select_option(value=str(version.pk))
        datasets.get_by_role("button", name="Attach").click()
        expect(page.get_by_test_id("mount")).to_contain_text("/datasets/cats")

        page.get_by_test_id("start").click()
        page.wait_for_load_state()
        _wait_for_status(page, "Running", READY_MS)

        # In JupyterLab: list the folder, then try to write into it.
        with page.context.expect_page() as opened:
            page.get_by_test_id("open-jupyter").click()
        lab = opened.value
        lab.set_default_timeout(JUPYTER_MS)
        lab.wait_for_load_state()
        base = f"/nb/{notebook.pk}"
        # A JupyterLab terminal, driven from the page over Jupyter's terminal websocket
        # through Lattice's proxy on the notebook's origin (with the page's cookie): no
        # kernel is needed, so none of the kernel-attach hiccups the notebook story
        # works around.
        terminal = jupyter_api(lab, "POST", f"{base}/api/terminals")
        assert terminal["status"] == 200, terminal["text"]
        ws_url = lab_origin(lab).replace("http", "ws", 1) + (
            f"{base}/terminals/websocket/{terminal['json']['name']}"
        )
        # The shell works the marker out, so the echo of the typed line cannot match it.
        number = secrets.randbelow(1000)
        output = lab.evaluate(
            """([url, command, marker]) => new Promise((resolve, reject) => {
                const ws = new WebSocket(url);
                let out = "";
                setTimeout(() => reject(new Error("no answer: " + out)), 30000);
                ws.onopen = () => ws.send(JSON.stringify(["stdin", command + "\\r"]));
                ws.onmessage = (event) => {
                    const [kind, text] = JSON.parse(event.data);
                    if (kind !== "stdout") return;
                    out += text;
                    if (out.includes(marker)) { ws.close(); resolve(out); }
                };
            })""",
            [
                ws_url,
                (
                    "ls -R /datasets/cats; touch /datasets/cats/new.txt; "
                    f"echo finished-$(({number} + 1))"
                ),
                f"finished-{number + 1}",
            ],
        )
        for name in ("readme.txt", "images", "cat-1.bin", "cat-2.bin"):
            assert name in output, output
        assert "Read-only file system" in output, output
        lab.close()

        # And the bytes in the container are the uploaded ones.
        container = docker_client.containers.list(
            filters={"label": f"lattice.notebook={notebook.pk}", "status": "running"}
        )[0]
        result = container.exec_run(["sha256sum", "/datasets/cats/images/cat-2.bin"])
        import hashlib

        assert hashlib.sha256(files["images/cat-2.bin"]).hexdigest() in result.output.decode()
    finally:
        _remove_notebook_containers(docker_client, [n.pk for n in created])
        _remove_volumes(docker_client, [n.volume for n in created])
