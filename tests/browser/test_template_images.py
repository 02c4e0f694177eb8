"""A PyTorch notebook holds PyTorch: made from the template on the page, started on the real
Docker runtime (its image built here, images/build-template.sh), and `import torch` run in a
kernel through JupyterLab, whose file browser shows /datasets and /storage beside the
notebook's files."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.tenancy import team_scope
from apps.runtimes.images import local_template_image
from tests.browser.conftest import (
    JUPYTER_MS,
    READY_MS,
    _remove_notebook_containers,
    _remove_volumes,
    _wait_for_status,
    create_notebook,
    log_in,
    run_in_new_notebook,
)

pytestmark = [pytest.mark.browser, pytest.mark.docker]


def test_a_pytorch_notebook_imports_torch_in_jupyterlab(
    asgi_page: Any,
    asgi_live_server: str,
    local_host: Any,
    pytorch_image: str,
    unique_ids: None,
    docker_client: Any,
    acme: Any,
    alice: Any,
    password: str,
    catalogue: dict[str, Any],
) -> None:
    from apps.notebooks.models import NotebookSession, TeamNotebookSettings

    page = asgi_page
    made: list[Any] = []
    try:
        log_in(page, alice.email, password)
        page.goto("/t/acme/notebooks/")
        notebook = create_notebook(page, acme, "Torch", catalogue["cpu-small"], "PyTorch")
        made.append(notebook)

        page.get_by_test_id("start").click()
        page.wait_for_load_state()
        _wait_for_status(page, "Running", READY_MS)
        with team_scope(acme):
            session = NotebookSession.objects.filter(notebook=notebook).latest("pk")
        assert session.image == pytorch_image == local_template_image("pytorch")

        with page.context.expect_page() as opened:
            page.get_by_test_id("open-jupyter").click()
        lab = opened.value
        lab.set_default_timeout(JUPYTER_MS)
        lab.wait_for_load_state()
        # The file browser's root: the notebook's files, with links to /datasets, /storage
        # and the note that explains them.
        for name in ("datasets", "storage", "README-lattice.md"):
            lab.locator(".jp-DirListing-item", has_text=name).first.wait_for()
        version = (
            docker_client.containers.run(
                pytorch_image,
                ["python", "-c", "import torch; print(torch.__version__)"],
                entrypoint=[],
                network_disabled=True,
                remove=True,
            )
            .decode()
            .strip()
        )
        assert version.startswith("2.")
        run_in_new_notebook(
            lab,
            f"/nb/{notebook.pk}",
            "Torch.ipynb",
            'import torch; print("torch", torch.__version__)',
            shows=f"torch {version}",
        )
        lab.close()
    finally:
        _remove_notebook_containers(docker_client, [n.pk for n in made])
        volumes = [n.volume for n in made]
        with team_scope(acme):
            volumes += [s.storage_volume for s in TeamNotebookSettings.objects.all()]
        _remove_volumes(docker_client, volumes)
