"""What a job run leaves, saved on real Docker: /outputs as a dataset or model version with its
lineage, or kept files with an expiry; the executed notebook as the run's result.

The real pieces: a container of the notebook image (a Spec made here, as the engine's would
be) that writes /outputs and exits; apps.jobs.outputs.outputs_collect; the web tier (a live
server: apps.models.hostsaves and the datasets upload services); the agent's protocol client
(apps.machines.savefolder.run_save, what ``agent.save_folder`` runs) reading the EXITED
container. The engine is not needed: Run and Attempt rows are made here as it would leave
them after exit 0, Celery's hop to the host's queue is skipped (the task's arguments, as
outputs_collect queued them, go to run_save), and ``outputs_finished`` (the engine's
run_outputs_done) is overridden to record what it is told.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from docker.errors import NotFound

from apps.datasets.models import DatasetVersion, VersionFile, blob_key
from apps.jobs import outputs
from apps.jobs.models import Attempt, Job, Run, RunFile
from apps.machines.savefolder import run_save
from apps.models.models import ModelFile, ModelVersion
from apps.models.selectors import lineage_datasets
from apps.runtimes.base import Spec
from apps.runtimes.docker import DockerRuntime
from tests.dataset_fixtures import make_version
from tests.factories import HostFactory
from tests.job_fixtures import executed_notebook, make_job

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
    """The agent tasks outputs_collect queued: (args, kwargs, queue)."""
    sent: list[tuple[tuple[Any, ...], dict[str, Any], str]] = []
    monkeypatch.setattr(
        outputs.agent_save_folder,
        "apply_async",
        lambda args, kwargs, queue: sent.append((tuple(args), dict(kwargs), queue)),
    )
    return sent


@pytest.fixture
def finished():
    """What outputs_finished was told (the engine's run_outputs_done stands aside)."""
    told: list[tuple[int, bool, str]] = []

    def record(run_id: int, *, ok: bool, message: str = "") -> None:
        told.append((run_id, ok, message))

    with outputs.outputs_finished.override(record):
        yield told


@pytest.fixture
def docker(notebook_image, docker_client):
    """Runs a script in the notebook image with the run's volumes, to its exit; removes
    its containers and volumes afterwards."""
    runtime = DockerRuntime(docker_client)
    made: list[tuple[dict[str, Any], list[str]]] = []

    def run(script: str) -> dict[str, Any]:
        name = f"jb-t{uuid.uuid4().hex[:8]}"
        volumes = {f"lattice-test-{name}-out": "/outputs", f"lattice-test-{name}-ws": "/workspace"}
        state = runtime.start(
            Spec(
                name=name,
                image=notebook_image,
                command=["sh", "-c", script],
                memory_bytes=256 * 1024**2,
                # As a job attempt runs (apps.jobs.spec leaves Spec's default user): the
                # image's user, who owns /outputs and /workspace, with no capability.
                user="1000:1000",
                volumes=volumes,
                labels={"team": "acme", "until": "exit"},
            )
        )
        made.append((state, list(volumes)))
        deadline = time.monotonic() + 60
        while runtime.poll(state) is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert runtime.poll(state) == 0
        return state

    yield runtime, run
    for state, volumes in made:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(state["container_id"]).remove(force=True)
        for volume in volumes:
            with contextlib.suppress(NotFound):
                docker_client.volumes.get(volume).remove(force=True)


def exited_run(job: Job, actor, state: dict[str, Any]) -> tuple[Run, Attempt]:
    """A run as the engine leaves it when its attempt exited 0: running, "saving" next."""
    number = Run.objects.for_team(job.team).filter(job=job).count() + 1
    run = Run.objects.for_team(job.team).create(
        team=job.team,
        job=job,
        number=number,
        status=Run.Status.RUNNING,
        triggered_by=actor,
        definition={field: getattr(job, field) for field in Job.DEFINITION_FIELDS},
        started_at=timezone.now(),
    )
    attempt = Attempt.objects.for_team(job.team).create(
        team=job.team,
        run=run,
        number=1,
        machine_type=job.machine_type,
        status=Attempt.Status.EXITED,
        host=HostFactory.create(),
        runtime_state=state,
        exit_code=0,
    )
    return run, attempt


def collect(runtime, run: Run, attempt: Attempt, queued) -> Run:
    """outputs_collect, then what each host task it queued runs (against the exited container)."""
    before = len(queued)
    assert outputs.outputs_collect(run, attempt) is True
    sent = queued[before:]
    assert sent, "outputs_collect queued nothing"
    for (host_name, state, folder, url, token), kwargs, queue in sent:
        assert queue == f"host.{host_name}"
        run_save(runtime, state, folder, url, token, **kwargs)
    run.refresh_from_db()
    return run


def stored(rows) -> dict[str, bytes]:
    out = {}
    for row in rows:
        with default_storage.open(blob_key(row.blob.sha256), "rb") as handle:
            out[row.path] = handle.read()
    return out


WRITE = (
    "mkdir -p /outputs/parts && printf 'a,b\\n1,2\\n' > /outputs/features.csv "
    "&& printf '%s' \"$1\" > /outputs/parts/note.txt"
)


def test_outputs_become_dataset_version_1_with_lineage_then_version_2(
    server, queued, finished, docker, acme, alice, catalogue
):
    runtime, run_script = docker
    job = make_job(acme, alice, output=Job.Output.DATASET, output_name="Features")

    run, attempt = exited_run(job, alice, run_script(WRITE.replace('"$1"', "first")))
    run = collect(runtime, run, attempt, queued)

    assert run.outputs_state == Run.Outputs.SAVED
    assert finished == [(run.pk, True, "")]
    version = DatasetVersion.objects.for_team(acme).get(pk=run.dataset_version_id)
    assert version.dataset.name == "Features"  # made, as it was missing
    assert version.status == DatasetVersion.Status.READY
    assert version.number == 1
    assert (version.source, version.source_id) == ("job", run.pk)
    assert version.source_label == f"job Nightly features run {run.number}"
    files = VersionFile.objects.for_team(acme).filter(version=version)
    assert stored(files) == {"features.csv": b"a,b\n1,2\n", "parts/note.txt": b"first"}

    shown = outputs.outputs_described(run)
    assert shown["dataset_version"] == {
        "dataset": "Features",
        "number": 1,
        "url": f"/t/acme/datasets/{version.dataset.slug}/?version=1",
    }
    assert (shown["state"], shown["model_version"], shown["files"]) == ("saved", None, [])

    # The next run of the job: the same dataset gets version 2 (even with the same files).
    second, attempt = exited_run(job, alice, run_script(WRITE.replace('"$1"', "first")))
    second = collect(runtime, second, attempt, queued)
    again = DatasetVersion.objects.for_team(acme).get(pk=second.dataset_version_id)
    assert (again.dataset_id, again.number, again.source_id) == (version.dataset_id, 2, second.pk)
    assert finished[-1] == (second.pk, True, "")


def test_outputs_become_a_model_version_trained_on_the_runs_inputs(
    server, queued, finished, docker, acme, alice, catalogue
):
    runtime, run_script = docker
    data = make_version(acme, "Churn data", {"rows.csv": b"a,b\n"})
    job = make_job(
        acme,
        alice,
        output=Job.Output.MODEL,
        output_name="Churn model",
        inputs=[{"name": "churn", "version": data.pk}],
    )
    run, attempt = exited_run(
        job, alice, run_script("printf 'weights' > /outputs/model.bin && echo '{}' > /outputs/m")
    )

    run = collect(runtime, run, attempt, queued)

    assert run.outputs_state == Run.Outputs.SAVED
    version = ModelVersion.objects.for_team(acme).get(pk=run.model_version_id)
    assert version.model.name == "Churn model"
    assert version.status == ModelVersion.Status.READY
    assert (version.source, version.source_id) == (ModelVersion.Source.JOB, run.pk)
    assert list(lineage_datasets(acme, version)) == [data]
    assert outputs.outputs_described(run)["model_version"] == {
        "model": "Churn model",
        "number": 1,
        "url": f"/t/acme/models/{version.model.slug}/v/1/",
    }
    files = ModelFile.objects.for_team(acme).filter(version=version)
    assert stored(files) == {"model.bin": b"weights", "m": b"{}\n"}
    assert finished == [(run.pk, True, "")]


def test_outputs_kept_as_artifacts_expire(server, queued, finished, docker, acme, alice, catalogue):
    runtime, run_script = docker
    job = make_job(acme, alice, output=Job.Output.ARTIFACTS, keep_files_days=3)
    run, attempt = exited_run(job, alice, run_script(WRITE.replace('"$1"', "kept")))

    run = collect(runtime, run, attempt, queued)

    assert run.outputs_state == Run.Outputs.SAVED
    kept = RunFile.objects.for_team(acme).filter(run=run)
    assert {f.kind for f in kept} == {RunFile.Kind.ARTIFACT}
    assert stored(kept) == {"features.csv": b"a,b\n1,2\n", "parts/note.txt": b"kept"}
    for row in kept:
        assert row.sha256 == sha(stored([row])[row.path])
        expected = timezone.now() + timedelta(days=3)
        assert abs((row.expires_at - expected).total_seconds()) < 120
    # Held by the run: the datasets' blob collection keeps them.
    shown = outputs.outputs_described(run)
    assert sorted((f["path"], f["url"]) for f in shown["files"]) == [
        (f.path, f"/t/acme/jobs/runs/{run.pk}/files/{f.pk}/") for f in kept.order_by("path")
    ]
    assert shown["notebook_url"] == ""
    held = {row["blob_id"] for row in outputs.files_held(acme)}
    assert {f.blob_id for f in kept} <= held

    assert outputs.files_expire(now=timezone.now() + timedelta(days=2)) == 0
    assert outputs.files_expire(now=timezone.now() + timedelta(days=3, minutes=5)) == 2
    assert not RunFile.objects.for_team(acme).filter(run=run).exists()


def test_the_executed_notebook_is_the_runs_result(
    server, queued, finished, docker, acme, alice, catalogue, tmp_path
):
    runtime, run_script = docker
    job = make_job(
        acme,
        alice,
        entrypoint=Job.Entrypoint.NOTEBOOK,
        notebook_path="train.ipynb",
        output=Job.Output.NONE,
        keep_files_days=7,
    )
    body = executed_notebook("<b>bold</b>").decode()
    script = (
        f"mkdir -p /workspace/.lattice-run && printf '%s' '{body}' > "
        "/workspace/.lattice-run/executed.ipynb && echo abc > /workspace/.lattice-run/commit"
    )
    run, attempt = exited_run(job, alice, run_script(script))

    run = collect(runtime, run, attempt, queued)

    assert run.outputs_state == Run.Outputs.SAVED
    kept = list(RunFile.objects.for_team(acme).filter(run=run))
    assert [(f.kind, f.path) for f in kept] == [(RunFile.Kind.RESULT, "executed.ipynb")]
    assert json.loads(stored(kept)["executed.ipynb"]) == json.loads(body)
    assert outputs.outputs_described(run)["notebook_url"] == f"/t/acme/jobs/runs/{run.pk}/notebook/"
    assert finished == [(run.pk, True, "")]


def test_a_missing_outputs_folder_fails_the_outputs_not_silently(
    server, queued, finished, docker, acme, alice, catalogue
):
    runtime, run_script = docker
    job = make_job(acme, alice, output=Job.Output.DATASET, output_name="Features")
    run, attempt = exited_run(job, alice, run_script("true"))  # writes nothing

    run = collect(runtime, run, attempt, queued)

    assert run.outputs_state == Run.Outputs.FAILED
    assert "holds no files" in run.outputs_message
    assert run.dataset_version_id is None
    assert finished == [(run.pk, False, run.outputs_message)]


def test_nothing_to_save_is_said_at_once(acme, alice, catalogue, queued):
    job = make_job(acme, alice, output=Job.Output.NONE)
    run, attempt = exited_run(job, alice, {"name": "jb-none", "container_id": "gone"})
    assert outputs.outputs_collect(run, attempt) is False
    assert queued == []


def test_kept_files_hold_their_blobs_until_they_expire(
    server, queued, finished, docker, acme, alice, catalogue
):
    from apps.datasets.models import Blob
    from apps.datasets.upkeep import blobs_collect

    runtime, run_script = docker
    job = make_job(acme, alice, output=Job.Output.ARTIFACTS, keep_files_days=1)
    run, attempt = exited_run(job, alice, run_script("echo only-here > /outputs/kept.txt"))
    run = collect(runtime, run, attempt, queued)
    kept = RunFile.objects.for_team(acme).get(run=run)
    later = timezone.now() + timedelta(days=2)

    blobs_collect(now=later)  # the datasets' upkeep: nothing else holds this blob
    assert Blob.objects.filter(pk=kept.blob_id).exists()

    assert outputs.files_expire(now=later) == 1
    blobs_collect(now=later)
    assert not Blob.objects.filter(pk=kept.blob_id).exists()


def test_outputs_no_one_may_save_are_refused_not_skipped(acme, alice, bob, catalogue, queued):
    from apps.core.errors import ServiceError
    from apps.teams.models import Membership

    job = make_job(acme, alice, output=Job.Output.DATASET, output_name="Features")
    state = {"name": "jb-none", "container_id": "gone"}
    run, attempt = exited_run(job, None, state)
    job.created_by = None
    job.save(update_fields=["created_by"])
    run.refresh_from_db()
    with pytest.raises(ServiceError, match="No one is left"):
        outputs.outputs_collect(run, attempt)

    # The member who started it has left the team since: their permission is checked.
    second, attempt = exited_run(job, bob, state)
    Membership.objects.for_team(acme).filter(user=bob).delete()
    with pytest.raises(ServiceError):
        outputs.outputs_collect(second, attempt)
    assert queued == []
    assert Run.objects.for_team(acme).filter(outputs_state=Run.Outputs.SAVING).count() == 0
