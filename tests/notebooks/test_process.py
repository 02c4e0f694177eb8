"""Notebooks as local processes (the embedded default without Docker), with real JupyterLab."""

from __future__ import annotations

import json
import shutil

import pytest

from apps.core import stream
from apps.machines.inventory import collect
from apps.machines.services import host_ensure_local
from apps.notebooks import services
from apps.notebooks.models import NotebookSession, Status
from apps.runtimes import select
from tests.notebook_fixtures import make_notebook
from tests.notebooks.test_docker import proxy

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def process_host(settings, tmp_path, catalogue):
    settings.LATTICE_RUNTIME = "process"
    settings.LATTICE_RUNTIME_DIR = tmp_path / "runtime"
    select._runtime.cache_clear()
    stream.reset_for_tests()
    yield host_ensure_local(name="local", inventory=collect(), runtime="process")
    from apps.runtimes.select import host_runtime

    runtime = host_runtime()
    for managed in runtime.list_managed():
        runtime.stop(managed.state, timeout=3)
    select._runtime.cache_clear()
    shutil.rmtree(tmp_path / "runtime", ignore_errors=True)


def test_a_local_process_notebook_runs_jupyter_and_keeps_its_files(
    acme, alice, process_host, catalogue
):
    notebook = make_notebook(acme, alice, "Local")
    session = services.notebook_start(team=acme, actor=alice, notebook=notebook)
    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)
    notebook.refresh_from_db()
    assert session.status == Status.RUNNING, notebook.status_message

    base = f"/nb/{notebook.pk}/api/contents"
    body = {"type": "file", "format": "text", "content": "on this machine"}
    assert proxy(alice, "PUT", f"{base}/here.txt", body).status_code in (200, 201)
    services.notebook_stop(team=acme, actor=alice, notebook=notebook)
    services.notebook_start(team=acme, actor=alice, notebook=notebook)

    read = proxy(alice, "GET", f"{base}/here.txt")
    assert read.status_code == 200, read.text
    assert json.loads(read.text)["content"] == "on this machine"
    # The notebook's folder is its volume, not the runtime's own folder.
    volume = process_host and (
        select.host_runtime().root / "volumes" / notebook.volume / "here.txt"  # type: ignore[attr-defined]
    )
    assert volume.read_text() == "on this machine"
