"""A person saves a folder of their running notebook as a model version from its page, and
sees the save go by and end with the version's number; the notebook keeps running.

The notebook runs on the local process runtime; its host's agent (apps.machines.savefolder,
what ``agent.save_folder`` runs) is started in a thread when the service queues its task,
and speaks to this live server with its ticket, as a host does.
"""

from __future__ import annotations

import os
import sys
import threading

import pytest
from playwright.sync_api import expect

from apps.machines.savefolder import run_save
from apps.models.models import Model, ModelVersion, SaveTicket
from apps.notebooks import saves
from apps.notebooks.models import Status
from apps.runtimes.base import Spec
from apps.runtimes.process import LocalProcessRuntime
from tests.browser.conftest import log_in
from tests.factories import HostFactory, NotebookFactory, NotebookSessionFactory

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024


def test_a_folder_saved_from_the_notebook_page_shows_its_version(
    page, live_server, acme, alice, password, settings, media, tmp_path, monkeypatch
):
    settings.LATTICE_INTERNAL_URL = live_server.url
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    state = runtime.start(
        Spec(
            name="nb-browser",
            image="",
            command=[sys.executable, "-c", "import time; time.sleep(600)"],
            volumes={"vol-browser": "/notebooks"},
        )
    )
    out = tmp_path / "runtime" / "volumes" / "vol-browser" / "models" / "run1"
    out.mkdir(parents=True)
    (out / "model.bin").write_bytes(os.urandom(5 * CHUNK))
    (out / "predict.py").write_text("def predict(x):\n    return x\n")
    notebook = NotebookFactory.create(team=acme, name="Trainer", status=Status.RUNNING)
    NotebookSessionFactory.create(
        notebook=notebook, status=Status.RUNNING, host=HostFactory.create(), runtime_state=state
    )
    agents: list[threading.Thread] = []

    def host_agent(args, queue):
        agent = threading.Thread(target=run_save, args=(runtime, *args[1:]))
        agents.append(agent)
        agent.start()

    monkeypatch.setattr(saves.agent_save_folder, "apply_async", host_agent)
    try:
        log_in(page, alice.email, password)
        page.goto(f"/t/acme/notebooks/{notebook.pk}/")
        section = page.get_by_test_id("save-model")
        section.get_by_label("Folder").fill("models/run1")
        section.get_by_label("New model's name").fill("Churn")
        section.get_by_label("Message (optional)").fill("first fit")
        section.get_by_role("button", name="Save as a model version").click()

        expect(page.get_by_text("as a new version of Churn; Trainer keeps running")).to_be_visible()
        save = page.get_by_test_id("save")
        expect(save).to_contain_text("/notebooks/models/run1")
        # The page asks again every second until the save ends.
        expect(save.get_by_test_id("save-version")).to_have_text("version 1", timeout=20_000)
        assert save.get_attribute("data-state") == "ready"
        version = ModelVersion.objects.for_team(acme).get()
        assert (version.number, version.file_count, version.message) == (1, 2, "first fit")
        assert runtime.poll(state) is None  # the notebook kept running
    finally:
        for agent in agents:
            agent.join(timeout=30)
        runtime.stop(state, timeout=3)


def test_the_format_chosen_and_the_folders_metrics_json_show_on_the_version(
    page, live_server, acme, alice, password, settings, media, tmp_path, monkeypatch
):
    settings.LATTICE_INTERNAL_URL = live_server.url
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    state = runtime.start(
        Spec(
            name="nb-browser-metrics",
            image="",
            command=[sys.executable, "-c", "import time; time.sleep(600)"],
            volumes={"vol-metrics": "/notebooks"},
        )
    )
    out = tmp_path / "runtime" / "volumes" / "vol-metrics" / "iris-model"
    out.mkdir(parents=True)
    (out / "predict.py").write_text("def setup():\n    pass\n\n\ndef predict(**x):\n    return x\n")
    (out / "metrics.json").write_text(
        '{"metrics": {"accuracy": 0.9737}, "parameters": {"max_depth": 3}}'
    )
    notebook = NotebookFactory.create(team=acme, name="Trainer", status=Status.RUNNING)
    NotebookSessionFactory.create(
        notebook=notebook, status=Status.RUNNING, host=HostFactory.create(), runtime_state=state
    )
    agents: list[threading.Thread] = []

    def host_agent(args, queue):
        agent = threading.Thread(target=run_save, args=(runtime, *args[1:]))
        agents.append(agent)
        agent.start()

    monkeypatch.setattr(saves.agent_save_folder, "apply_async", host_agent)
    try:
        log_in(page, alice.email, password)
        page.goto(f"/t/acme/notebooks/{notebook.pk}/")
        section = page.get_by_test_id("save-model")
        section.get_by_label("Folder").fill("iris-model")
        section.get_by_label("New model's name").fill("Iris")
        section.get_by_label("Format").select_option(label="Python predictor (predict.py)")
        section.get_by_role("button", name="Save as a model version").click()

        save = page.get_by_test_id("save")
        expect(save.get_by_test_id("save-version")).to_have_text("version 1", timeout=20_000)
        save.get_by_test_id("save-version").click()

        expect(page.get_by_role("heading", level=1)).to_contain_text("Iris v1")
        expect(page.get_by_text("Python predictor (predict.py)").first).to_be_visible()
        metrics = page.get_by_test_id("metadata-metrics")
        expect(metrics.get_by_role("rowheader", name="accuracy")).to_be_visible()
        expect(metrics.get_by_role("cell", name="0.9737")).to_be_visible()
        version = ModelVersion.objects.for_team(acme).get()
        assert version.format == "python"
        assert version.metadata["metrics"] == {"accuracy": 0.9737}
    finally:
        for agent in agents:
            agent.join(timeout=30)
        runtime.stop(state, timeout=3)


def test_the_save_form_keeps_what_was_typed_and_shows_the_error_by_its_field(
    page, live_server, acme, alice, password, monkeypatch
):
    Model.objects.for_team(acme).create(team=acme, name="Iris", slug="iris")
    notebook = NotebookFactory.create(team=acme, name="Trainer", status=Status.RUNNING)
    NotebookSessionFactory.create(
        notebook=notebook, status=Status.RUNNING, host=HostFactory.create(), runtime_state={}
    )
    monkeypatch.setattr(saves.agent_save_folder, "apply_async", lambda *_a, **_k: None)
    page.set_viewport_size({"width": 390, "height": 800})
    log_in(page, alice.email, password)
    page.goto(f"/t/acme/notebooks/{notebook.pk}/")
    section = page.get_by_test_id("save-model")
    name = section.get_by_label("New model's name")
    # "New model's name" is for "A new model" only.
    section.get_by_label("Model", exact=True).select_option(label="Iris")
    expect(name).to_be_hidden()
    section.get_by_label("Model", exact=True).select_option(label="A new model (named below)")
    expect(name).to_be_visible()

    section.get_by_label("Folder").fill("../etc")
    name.fill("Churn")
    section.get_by_label("Message (optional)").fill("fit 2")
    section.get_by_role("button", name="Save as a model version").click()

    section = page.get_by_test_id("save-model")
    error = section.locator("#save-folder-error")
    expect(error).to_contain_text("must be inside /notebooks")
    expect(error).to_be_in_viewport()  # next to the field it names, the page scrolled to it
    expect(section.get_by_label("Folder")).to_have_value("../etc")
    expect(section.get_by_label("Folder")).to_be_focused()
    expect(section.get_by_label("New model's name")).to_have_value("Churn")
    expect(section.get_by_label("Message (optional)")).to_have_value("fit 2")
    assert not SaveTicket.objects.for_team(acme).exists()
