"""Saving a running notebook's folder as a model version, end to end.

The real pieces: the web tier (a live server: apps.models.hostsaves, the datasets upload
services), the agent's protocol client (apps.machines.savefolder.run_save, what the
``agent.save_folder`` task runs) and a real runtime: local processes, and Docker. Only
Celery's hop to the host's queue is skipped: the task's arguments, as the notebooks
service queued them, are handed to run_save here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tarfile
import uuid
from typing import Any

import httpx
import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from docker.errors import NotFound

from apps.datasets.models import blob_key
from apps.machines import savefolder
from apps.machines.savefolder import run_save
from apps.models.hooks import source_link
from apps.models.models import ModelFile, ModelVersion, SaveTicket
from apps.models.selectors import lineage_datasets
from apps.models.services.saves import FAILURES
from apps.notebooks import saves
from apps.notebooks.models import Status
from apps.runtimes import select
from apps.runtimes.base import Spec
from apps.runtimes.docker import DockerRuntime
from apps.runtimes.process import LocalProcessRuntime
from apps.teams.models import Membership
from tests.dataset_fixtures import make_version
from tests.factories import HostFactory, NotebookMountFactory, NotebookSessionFactory
from tests.helpers import wait_for
from tests.notebook_fixtures import make_notebook

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024  # the server's chunk size here (tests.dataset_fixtures.media)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(live_server, settings, media):
    settings.LATTICE_INTERNAL_URL = live_server.url
    return live_server


@pytest.fixture
def queued(monkeypatch):
    """The agent tasks the service queued: (args, queue)."""
    sent: list[tuple[tuple[Any, ...], str]] = []
    monkeypatch.setattr(
        saves.agent_save_folder,
        "apply_async",
        lambda args, queue: sent.append((tuple(args), queue)),
    )
    return sent


def running_session(team, actor, state: dict[str, Any]):
    notebook = make_notebook(team, actor, f"Trainer {uuid.uuid4().hex[:4]}")
    notebook.status = Status.RUNNING
    notebook.save(update_fields=["status"])
    session = NotebookSessionFactory.create(
        notebook=notebook, status=Status.RUNNING, host=HostFactory.create(), runtime_state=state
    )
    return notebook, session


def save(team, actor, notebook, queued, runtime, *, folder="out", **fields) -> SaveTicket:
    """Start a save as a person does, then run what the host's agent runs."""
    with_defaults = {"model_name": "Churn", **fields}
    ticket = saves.notebook_save_model(
        team=team, actor=actor, notebook=notebook, folder=folder, **with_defaults
    )
    (host_name, state, relative, url, token), queue = queued[-1]
    assert queue == f"host.{host_name}"
    run_save(runtime, state, relative, url, token)
    ticket.refresh_from_db()
    return ticket


def stored(version: ModelVersion) -> dict[str, tuple[int, str]]:
    """path -> (size, sha256 of the bytes in storage) of each of the version's files."""
    out = {}
    for row in ModelFile.objects.for_team(version.team_id).filter(version=version):
        with default_storage.open(blob_key(row.blob.sha256), "rb") as handle:
            out[row.path] = (row.size, sha(handle.read()))
    return out


def expected(files: dict[str, bytes]) -> dict[str, tuple[int, str]]:
    return {path: (len(data), sha(data)) for path, data in files.items()}


FILES = {
    "model.bin": os.urandom(3 * CHUNK + 5),
    "sub/config.json": b'{"depth": 3}\n',
    "empty.txt": b"",
}


# --- local processes ---------------------------------------------------------------------------


class Changing(LocalProcessRuntime):
    """Runs ``between`` right before the second read of the folder (the agent's pass 2)."""

    reads = 0
    between: Any = None

    def read_folder(self, state, folder, *, root="/notebooks"):
        self.reads += 1
        if self.reads == 2 and self.between:
            self.between(self.root / "volumes" / "vol-save" / "out")
        return super().read_folder(state, folder, root=root)


@pytest.fixture
def process_notebook(tmp_path, acme, alice, catalogue):
    runtime = Changing(tmp_path / "runtime")
    state = runtime.start(
        Spec(
            name="nb-save",
            image="",
            command=[sys.executable, "-c", "import time; time.sleep(600)"],
            volumes={"vol-save": "/notebooks"},
        )
    )
    out = tmp_path / "runtime" / "volumes" / "vol-save" / "out"
    for path, data in FILES.items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(data)
    (out / "link").symlink_to("/etc/passwd")
    notebook, session = running_session(acme, alice, state)
    yield runtime, notebook, session
    runtime.stop(state, timeout=3)


def test_the_files_in_the_version_are_the_folders_with_its_lineage(
    server, queued, process_notebook, acme, alice
):
    runtime, notebook, session = process_notebook
    dataset = make_version(acme, "Churn data", {"rows.csv": b"a,b\n"})
    NotebookMountFactory.create(notebook=notebook, version=dataset, name="churn")
    session.requested_at = timezone.now()  # mounted before this session started
    session.save(update_fields=["requested_at"])
    later = make_version(acme, "Later data", {"x.csv": b"x\n"})
    NotebookMountFactory.create(notebook=notebook, version=later, name="later")  # next start's

    ticket = save(acme, alice, notebook, queued, runtime, message="first fit")

    assert ticket.result == SaveTicket.Result.READY
    version = ModelVersion.objects.for_team(acme).get(pk=ticket.version_id)
    assert version.status == ModelVersion.Status.READY
    assert version.number == 1
    assert stored(version) == expected(FILES)
    assert version.metadata["skipped"] == ["link"]
    assert version.message == "first fit"
    assert version.source == ModelVersion.Source.NOTEBOOK
    assert version.source_id == session.pk
    assert list(lineage_datasets(acme, version)) == [dataset]
    assert version.progress is None
    # The notebook kept running.
    assert runtime.poll(session.runtime_state) is None
    session.refresh_from_db()
    assert session.status == Status.RUNNING
    # The page's view of it, and the version's link back to the notebook.
    shown = saves.notebook_saves(notebook)[0]
    assert (shown["state"], shown["version"]) == ("ready", 1)
    assert source_link(acme, version) == (
        f"{notebook.name}, session {session.pk}",
        f"/t/acme/notebooks/{notebook.pk}/",
    )


def test_the_same_folder_again_is_the_same_version(server, queued, process_notebook, acme, alice):
    runtime, notebook, _ = process_notebook
    first = save(acme, alice, notebook, queued, runtime)

    again = save(
        acme, alice, notebook, queued, runtime, model=first.saved_model.slug, model_name=""
    )

    assert again.result == SaveTicket.Result.EXISTING
    assert again.version_id == first.version_id
    assert ModelVersion.objects.for_team(acme).count() == 1


def _folder(runtime) -> Any:
    return runtime.root / "volumes" / "vol-save" / "out"


def test_the_format_chosen_and_the_folders_metrics_json_are_the_versions(
    server, queued, process_notebook, acme, alice
):
    runtime, notebook, _ = process_notebook
    written = {"metrics": {"accuracy": 0.97}, "parameters": {"max_depth": 3}}
    (_folder(runtime) / "metrics.json").write_text(json.dumps(written))

    ticket = save(acme, alice, notebook, queued, runtime, format="python")

    version = ModelVersion.objects.for_team(acme).get(pk=ticket.version_id)
    assert version.status == ModelVersion.Status.READY
    assert version.format == "python"
    # Already metadata (what the iris example writes): its keys, beside the save's own.
    assert version.metadata["metrics"] == {"accuracy": 0.97}
    assert version.metadata["parameters"] == {"max_depth": 3}
    assert version.metadata["skipped"] == ["link"]


def test_a_flat_metrics_json_is_recorded_as_the_metrics(
    server, queued, process_notebook, acme, alice
):
    runtime, notebook, _ = process_notebook
    (_folder(runtime) / "metrics.json").write_text('{"accuracy": 0.9, "loss": 0.2}')

    ticket = save(acme, alice, notebook, queued, runtime)

    version = ModelVersion.objects.for_team(acme).get(pk=ticket.version_id)
    assert version.format == "other"
    assert version.metadata["metrics"] == {"accuracy": 0.9, "loss": 0.2}


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("metrics.json", b"[1, 2]"),  # not an object
        ("metrics.json", b"{not json"),
        ("metrics.json", b'{"a": "' + b"x" * (64 * 1024) + b'"}'),  # over 64 KiB
        ("sub/metrics.json", b'{"accuracy": 0.5}'),  # not at the top
    ],
)
def test_a_metrics_json_that_is_not_a_small_top_level_object_is_left_out(
    server, queued, process_notebook, acme, alice, path, content
):
    runtime, notebook, _ = process_notebook
    (_folder(runtime) / path).write_bytes(content)

    ticket = save(acme, alice, notebook, queued, runtime)

    version = ModelVersion.objects.for_team(acme).get(pk=ticket.version_id)
    assert version.status == ModelVersion.Status.READY
    assert "metrics" not in version.metadata
    assert version.metadata["skipped"] == ["link"]


def test_an_unknown_format_is_refused_on_its_field(process_notebook, acme, alice, queued):
    _, notebook, _ = process_notebook
    with pytest.raises(saves.NotebookError) as refused:
        saves.notebook_save_model(
            team=acme, actor=alice, notebook=notebook, folder="out", model_name="X", format="exe"
        )
    assert refused.value.field == "format"
    assert queued == []


def test_a_file_changed_mid_save_fails_it_naming_the_file(
    server, queued, process_notebook, acme, alice
):
    runtime, notebook, _ = process_notebook
    runtime.between = lambda out: (out / "model.bin").write_bytes(os.urandom(3 * CHUNK + 5))

    ticket = save(acme, alice, notebook, queued, runtime)

    assert ticket.result == SaveTicket.Result.FAILED
    version = ModelVersion.objects.for_team(acme).get(pk=ticket.version_id)
    assert version.status == ModelVersion.Status.FAILED
    assert version.number is None
    assert version.failure == f"model.bin: {FAILURES['changed']}"
    assert not ModelVersion.objects.for_team(acme).filter(status="ready").exists()
    assert saves.notebook_saves(notebook)[0]["state"] == "failed"


def test_a_file_removed_mid_save_fails_it_naming_the_file(
    server, queued, process_notebook, acme, alice
):
    runtime, notebook, _ = process_notebook
    runtime.between = lambda out: (out / "sub" / "config.json").unlink()

    ticket = save(acme, alice, notebook, queued, runtime)

    assert ticket.result == SaveTicket.Result.FAILED
    assert ticket.failure == f"sub/config.json: {FAILURES['vanished']}"


def test_a_member_removed_mid_save_stops_the_host(server, queued, process_notebook, acme, alice):
    runtime, notebook, _ = process_notebook
    runtime.between = lambda _: Membership.objects.for_team(acme).filter(user=alice).delete()

    ticket = save(acme, alice, notebook, queued, runtime)

    assert ticket.result == SaveTicket.Result.FAILED
    assert "no longer" in ticket.failure
    version = ModelVersion.objects.for_team(acme).get(pk=ticket.version_id)
    assert version.status == ModelVersion.Status.FAILED
    assert not ModelFile.objects.for_team(acme).exists()


def test_network_errors_are_tried_again(server, queued, process_notebook, acme, alice, monkeypatch):
    monkeypatch.setattr(savefolder, "BACKOFF", 0.01)
    real = httpx.HTTPTransport.handle_request
    failed: list[str] = []

    def flaky(transport, request):
        # The first two chunk PUTs are lost on the way, as on a bad network.
        if request.method == "PUT" and len(failed) < 2:
            failed.append(str(request.url))
            raise httpx.ConnectError("connection reset", request=request)
        return real(transport, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", flaky)
    runtime, notebook, _ = process_notebook

    ticket = save(acme, alice, notebook, queued, runtime)

    assert len(failed) == 2
    assert ticket.result == SaveTicket.Result.READY
    assert stored(ModelVersion.objects.for_team(acme).get()) == expected(FILES)


def _damaging(monkeypatch, times: int) -> list[int]:
    """The first ``times`` chunks sent arrive with a byte changed on the way."""
    real = savefolder.SaveClient.put_chunk
    damaged: list[int] = []

    def put_chunk(client, target, pieces):
        if len(damaged) < times:
            damaged.append(len(pieces))
            whole = b"".join(pieces)
            pieces = [bytes([whole[0] ^ 1]) + whole[1:]]
        real(client, target, pieces)

    monkeypatch.setattr(savefolder.SaveClient, "put_chunk", put_chunk)
    return damaged


def test_a_chunk_that_arrived_damaged_is_sent_again(
    server, queued, process_notebook, acme, alice, monkeypatch
):
    damaged = _damaging(monkeypatch, 2)
    runtime, notebook, _ = process_notebook

    ticket = save(acme, alice, notebook, queued, runtime)

    assert len(damaged) == 2
    assert ticket.result == SaveTicket.Result.READY
    assert stored(ModelVersion.objects.for_team(acme).get()) == expected(FILES)


def test_a_chunk_damaged_every_time_ends_the_save_after_a_few_sends(
    server, queued, process_notebook, acme, alice, monkeypatch
):
    monkeypatch.setattr(savefolder, "IN_FLIGHT", 1)  # one chunk at a time: counted exactly
    damaged = _damaging(monkeypatch, 10_000)
    runtime, notebook, _ = process_notebook

    ticket = save(acme, alice, notebook, queued, runtime)

    assert len(damaged) == savefolder.CHUNK_SENDS
    assert ticket.result == SaveTicket.Result.FAILED
    assert ticket.failure == FAILURES["damaged"]
    version = ModelVersion.objects.for_team(acme).get(pk=ticket.version_id)
    assert version.status == ModelVersion.Status.FAILED


def test_a_folder_the_host_cannot_read_fails_the_save_saying_why(
    server, queued, process_notebook, acme, alice
):
    runtime, notebook, _ = process_notebook
    saves.notebook_save_model(
        team=acme, actor=alice, notebook=notebook, folder="not-there", model_name="Churn"
    )
    (_, state, relative, url, token), _ = queued[-1]

    run_save(runtime, state, relative, url, token)

    ticket = SaveTicket.objects.for_team(acme).get()
    assert ticket.result == SaveTicket.Result.FAILED
    assert ticket.failure == "/notebooks/not-there does not exist."


def test_through_celery_the_hosts_agent_saves_the_folder(
    server, embedded_celery, settings, tmp_path, acme, alice, catalogue
):
    # No stand-in for the hop: the task goes through the broker to the worker consuming
    # host.local, whose agent finds the workload through its own runtime.
    settings.LATTICE_RUNTIME = "process"
    settings.LATTICE_RUNTIME_DIR = tmp_path / "agent"
    select._runtime.cache_clear()
    runtime = select.host_runtime()
    state = runtime.start(
        Spec(
            name="nb-celery",
            image="",
            command=[sys.executable, "-c", "import time; time.sleep(600)"],
            volumes={"vol-celery": "/notebooks"},
        )
    )
    out = tmp_path / "agent" / "volumes" / "vol-celery" / "out"
    out.mkdir(parents=True)
    (out / "model.bin").write_bytes(FILES["model.bin"])
    notebook = make_notebook(acme, alice, "Celery trainer")
    NotebookSessionFactory.create(
        notebook=notebook,
        status=Status.RUNNING,
        host=HostFactory.create(name="local"),
        runtime_state=state,
    )
    try:
        ticket = saves.notebook_save_model(
            team=acme, actor=alice, notebook=notebook, folder="out", model_name="Churn"
        )
        assert wait_for(lambda: SaveTicket.objects.for_team(acme).get().finished_at, timeout=30)
        ticket.refresh_from_db()
        assert ticket.result == SaveTicket.Result.READY
        version = ModelVersion.objects.for_team(acme).get()
        assert stored(version) == expected({"model.bin": FILES["model.bin"]})
    finally:
        runtime.stop(state, timeout=3)
        select._runtime.cache_clear()


def test_a_folder_outside_the_notebook_folder_is_refused(process_notebook, acme, alice, queued):
    _, notebook, _ = process_notebook
    for hostile in ("../../etc", "/etc", "out/../../.."):
        with pytest.raises(saves.NotebookError):
            saves.notebook_save_model(
                team=acme, actor=alice, notebook=notebook, folder=hostile, model_name="X"
            )
    assert queued == []


def test_only_a_running_notebook_is_a_source(acme, alice, catalogue, queued):
    notebook = make_notebook(acme, alice, "Stopped one")

    with pytest.raises(saves.NotebookConflictError, match="running"):
        saves.notebook_save_model(
            team=acme, actor=alice, notebook=notebook, folder="out", model_name="X"
        )
    assert queued == []


# --- Docker ------------------------------------------------------------------------------------


def _tar(files: dict[str, bytes], *, hard_link: tuple[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(f"out/{path}")
            info.size, info.uid, info.gid = len(data), 1000, 1000
            tar.addfile(info, io.BytesIO(data))
        if hard_link:
            info = tarfile.TarInfo(f"out/{hard_link[0]}")
            info.type, info.linkname = tarfile.LNKTYPE, f"out/{hard_link[1]}"
            tar.addfile(info)
    return out.getvalue()


class ChangingDocker(DockerRuntime):
    reads = 0
    change: dict[str, bytes] | None = None

    def read_folder(self, state, folder, *, root="/notebooks"):
        self.reads += 1
        if self.reads == 2 and self.change:
            self.client.api.put_archive(state["container_id"], "/notebooks", _tar(self.change))
        return super().read_folder(state, folder, root=root)


@pytest.fixture
def docker_notebook(busybox_image, docker_client, acme, alice, catalogue):
    runtime = ChangingDocker(docker_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    volume = f"lattice-test-{name}"
    state = runtime.start(
        Spec(
            name=name,
            image=busybox_image,
            command=["/bin/busybox", "sleep", "600"],
            memory_bytes=64 * 1024**2,
            volumes={volume: "/notebooks"},
            labels={"team": "acme"},
        )
    )
    docker_client.api.put_archive(
        state["container_id"], "/notebooks", _tar(FILES, hard_link=("zz-same.bin", "model.bin"))
    )
    notebook, session = running_session(acme, alice, state)
    yield runtime, notebook, session
    with contextlib.suppress(NotFound):
        docker_client.containers.get(state["container_id"]).remove(force=True)
    with contextlib.suppress(NotFound):
        docker_client.volumes.get(volume).remove(force=True)


def test_on_docker_the_files_in_the_version_are_the_folders(
    server, queued, docker_notebook, acme, alice
):
    runtime, notebook, session = docker_notebook

    ticket = save(acme, alice, notebook, queued, runtime)

    assert ticket.result == SaveTicket.Result.READY
    version = ModelVersion.objects.for_team(acme).get(pk=ticket.version_id)
    # The second name of model.bin came as a hard link: saved with the same bytes.
    assert stored(version) == expected({**FILES, "zz-same.bin": FILES["model.bin"]})
    assert runtime.poll(session.runtime_state) is None


def test_on_docker_a_file_changed_mid_save_is_detected(
    server, queued, docker_notebook, acme, alice
):
    runtime, notebook, _ = docker_notebook
    runtime.change = {"sub/config.json": b'{"depth": 4}\n'}

    ticket = save(acme, alice, notebook, queued, runtime)

    assert ticket.result == SaveTicket.Result.FAILED
    version = ModelVersion.objects.for_team(acme).get(pk=ticket.version_id)
    assert version.status == ModelVersion.Status.FAILED
    assert "sub/config.json" in version.failure
    assert not ModelVersion.objects.for_team(acme).filter(status="ready").exists()


def test_sending_counts_the_bytes_sent_not_the_bytes_read_again(
    server, queued, process_notebook, acme, alice, monkeypatch
):
    """A second save where one file changed reads every file again but sends only that
    file's bytes: "sending" says so (it once counted the whole folder as sent)."""
    runtime, notebook, _ = process_notebook
    first = save(acme, alice, notebook, queued, runtime)
    changed = os.urandom(2 * CHUNK + 7)
    (runtime.root / "volumes" / "vol-save" / "out" / "model.bin").write_bytes(changed)
    told: list[dict[str, Any]] = []
    real = savefolder.SaveClient.post

    def post(client, step, body=None):
        if step == "progress":
            told.append(dict(body or {}))
        return real(client, step, body)

    monkeypatch.setattr(savefolder.SaveClient, "post", post)

    again = save(
        acme, alice, notebook, queued, runtime, model=first.saved_model.slug, model_name=""
    )

    assert again.result == SaveTicket.Result.READY
    sending = [t for t in told if t["phase"] == "sending"]
    assert sending[-1] == {"phase": "sending", "done": len(changed), "total": len(changed)}
    assert sum(len(d) for d in FILES.values()) > len(changed)  # the folder is bigger


def test_a_manifest_whose_answer_was_lost_is_sent_again_and_the_save_goes_on(
    server, queued, process_notebook, acme, alice, monkeypatch
):
    """The server took the manifest, but its answer never reached the host (a proxy's
    timeout on a large one): the host's retry gets the same answer, not a 409 that ended
    the save."""
    monkeypatch.setattr(savefolder, "BACKOFF", 0.01)
    real = httpx.HTTPTransport.handle_request
    lost: list[str] = []

    def answer_lost(transport, request):
        response = real(transport, request)
        if request.url.path.endswith("/manifest") and not lost:
            lost.append(str(request.url))
            response.read()
            raise httpx.ReadTimeout("the answer never came", request=request)
        return response

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", answer_lost)
    runtime, notebook, _ = process_notebook

    ticket = save(acme, alice, notebook, queued, runtime)

    assert len(lost) == 1
    assert ticket.result == SaveTicket.Result.READY
    assert stored(ModelVersion.objects.for_team(acme).get()) == expected(FILES)
