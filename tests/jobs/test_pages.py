"""Job pages: the list with each job's last run, making and editing a job (refusals next to
their field), Run, a run's page (exit code, duration, an honest cost, outputs), cancel,
re-run as it was and edited, delete; viewers see and change nothing; the run's websocket.

``engine_stub`` records the calls to the engine's (real) run_create / run_cancel."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from apps.core import stream
from apps.jobs.models import Job, Run
from apps.machines.models import MachineType
from apps.teams.models import TeamSecret
from tests.asgi_server import session_cookie
from tests.jobs.api_helpers import make_job, spy_engine
from tests.notebook_fixtures import make_notebook

pytestmark = pytest.mark.django_db


@pytest.fixture
def engine_stub(monkeypatch):
    # The engine's real run_create / run_cancel, their calls recorded.
    return spy_engine(monkeypatch)


def form(**fields):
    data = {
        "name": "Train",
        "source": "notebook",
        "entrypoint": "command",
        "command": "python train.py",
        "machine_type": str(MachineType.objects.get(slug="cpu-small").pk),
        "template": "scipy",
        "output": "artifacts",
        "timeout_minutes": "60",
        "retries": "2",
        "concurrency": "1",
        "schedule_timezone": "UTC",
    }
    data.update(fields)
    return data


def test_the_list_shows_each_jobs_last_run_and_the_nav_links_it(
    client, acme, alice, catalogue, engine_stub
):
    job = make_job(acme, alice, "Nightly")
    make_job(acme, alice, "Never run")
    Run.objects.for_team(acme).create(
        team=acme, job=job, number=1, status=Run.Status.FAILED, definition={}
    )
    client.force_login(alice)

    page = client.get("/t/acme/jobs/").content.decode()

    assert 'href="/t/acme/jobs/"' in page  # the nav entry
    assert "Nightly" in page
    assert "never run" in page
    assert "jb-badge-failed" in page


def test_a_job_is_made_from_a_notebooks_files_with_secrets_ticked(client, acme, alice, catalogue):
    notebook = make_notebook(acme, alice, "Work")
    TeamSecret.objects.for_team(acme).create(team=acme, name="HF_TOKEN", sealed=b"x")
    client.force_login(alice)
    page = client.get(f"/t/acme/jobs/new/?notebook={notebook.pk}").content.decode()
    assert 'value="HF_TOKEN"' in page

    answer = client.post(
        "/t/acme/jobs/new/",
        form(
            notebook=str(notebook.pk),
            secrets=["HF_TOKEN"],
            env="EPOCHS=3\n",
            parameters='{"lr": 0.1}',
        ),
    )

    assert answer.status_code == 302, answer.content.decode()[:2000]
    job = Job.objects.for_team(acme).get()
    assert (job.notebook_id, job.secrets, job.env) == (notebook.pk, ["HF_TOKEN"], {"EPOCHS": "3"})
    assert (job.timeout_seconds, job.max_attempts) == (3600, 2)
    assert answer["Location"] == f"/t/acme/jobs/{job.pk}/"


def test_a_refusal_is_shown_next_to_its_field(client, acme, alice, catalogue):
    client.force_login(alice)

    answer = client.post("/t/acme/jobs/new/", form(source="git", git_url="file:///etc"))

    assert answer.status_code == 400
    assert "Give a Git URL" in answer.content.decode()
    assert not Job.objects.for_team(acme).exists()


def test_edit_run_cancel_and_rerun_from_the_pages(client, acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice, schedule="0 3 * * *")
    client.force_login(alice)

    edit = client.get(f"/t/acme/jobs/{job.pk}/edit/").content.decode()
    assert "0 3 * * *" in edit
    client.post(
        f"/t/acme/jobs/{job.pk}/edit/", form(name="Nightly", source="none", command="echo edited")
    )
    job.refresh_from_db()
    assert job.command == "echo edited"

    started = client.post(f"/t/acme/jobs/{job.pk}/run/")
    assert started["Location"] == f"/t/acme/jobs/{job.pk}/runs/1/"
    run_page = client.get(started["Location"]).content.decode()
    assert f"/ws/teams/acme/jobs/runs/{Run.objects.for_team(acme).get().pk}/" in run_page
    assert "unknown" in run_page  # no billing here: no made-up cost
    assert 'data-testid="run-cancel"' in run_page

    client.post(f"/t/acme/jobs/{job.pk}/runs/1/cancel/")
    assert Run.objects.for_team(acme).get(number=1).status == Run.Status.CANCELLED

    client.post(f"/t/acme/jobs/{job.pk}/runs/1/rerun/")
    again = Run.objects.for_team(acme).get(number=2)
    assert again.rerun_of.number == 1

    edited = client.get(f"/t/acme/jobs/{job.pk}/runs/1/rerun/").content.decode()
    assert "echo edited" in edited
    client.post(
        f"/t/acme/jobs/{job.pk}/runs/1/rerun/",
        {**form(source="none", command="echo once"), "edited": "1"},
    )
    third = Run.objects.for_team(acme).get(number=3)
    assert third.definition["command"] == "echo once"
    job.refresh_from_db()
    assert job.command == "echo edited"


def test_a_run_page_shows_exit_code_and_the_versions_made(client, acme, alice, catalogue, media):
    from tests.dataset_fixtures import make_version

    job = make_job(acme, alice)
    version = make_version(acme, "Churn", {"a.csv": b"1"})
    Run.objects.for_team(acme).create(
        team=acme,
        job=job,
        number=1,
        status=Run.Status.SUCCEEDED,
        definition={},
        exit_code=0,
        outputs_state=Run.Outputs.SAVED,
        dataset_version=version,
    )
    client.force_login(alice)

    page = client.get(f"/t/acme/jobs/{job.pk}/runs/1/").content.decode()

    assert f'href="/t/acme/datasets/{version.dataset.slug}/?version=1"' in page
    assert 'data-testid="exit-code">0<' in page
    assert 'data-testid="run-cancel"' not in page


def test_a_viewer_sees_but_cannot_run(client, acme, alice, erin, catalogue, engine_stub):
    job = make_job(acme, alice)
    client.force_login(erin)

    page = client.get(f"/t/acme/jobs/{job.pk}/").content.decode()
    assert job.name in page
    assert 'data-testid="job-run"' not in page
    assert client.post(f"/t/acme/jobs/{job.pk}/run/").status_code == 403
    assert client.get("/t/acme/jobs/new/").status_code == 403
    assert engine_stub == []


def test_delete_hides_the_job(client, acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice)
    client.force_login(alice)

    client.post(f"/t/acme/jobs/{job.pk}/delete/")

    assert client.get(f"/t/acme/jobs/{job.pk}/").status_code == 404
    assert Job.objects.for_team(acme).get().deleted_at is not None


@pytest.mark.django_db(transaction=True)
def test_the_run_websocket_says_hello_then_sends_log_lines(acme, alice, charlie, globex, catalogue):
    from config.asgi import application

    job = make_job(acme, alice)
    run = Run.objects.for_team(acme).create(team=acme, job=job, number=1, definition={})
    stream.stream_publish(run.stream, {"type": "logs", "lines": ["step 1"]})
    path = f"/ws/teams/acme/jobs/runs/{run.pk}/"

    def connect(user):
        headers = [
            (b"host", b"testserver"),
            (b"origin", b"http://testserver"),
            (b"cookie", f"sessionid={session_cookie(user)}".encode()),
        ]

        async def go():
            communicator = WebsocketCommunicator(application, path, headers=headers)
            connected, _ = await communicator.connect()
            if not connected:
                return False, []
            got = [await communicator.receive_json_from(), await communicator.receive_json_from()]
            await communicator.disconnect()
            return True, got

        return async_to_sync(go)()

    connected, (hello, logs) = connect(alice)
    assert connected
    assert hello["type"] == "hello"
    assert hello["status"]["status"] == "queued"
    assert hello["status"]["number"] == 1
    assert logs["lines"] == ["step 1"]
    assert connect(charlie) == (False, [])


def test_a_run_page_links_its_kept_files_and_the_executed_notebook(
    client, acme, alice, catalogue, media
):
    from datetime import timedelta

    from django.utils import timezone

    from apps.jobs.models import RunFile
    from tests.dataset_fixtures import store_blob

    job = make_job(acme, alice)
    run = Run.objects.for_team(acme).create(
        team=acme, job=job, number=1, status=Run.Status.SUCCEEDED, definition={}
    )
    blob = store_blob(b"{}")
    later = timezone.now() + timedelta(days=1)
    kept = {}
    for kind, path, expires in (
        (RunFile.Kind.RESULT, "executed.ipynb", later),
        (RunFile.Kind.ARTIFACT, "model.pt", later),
        (RunFile.Kind.ARTIFACT, "old.txt", timezone.now() - timedelta(days=1)),
    ):
        kept[path] = RunFile.objects.for_team(acme).create(
            team=acme,
            run=run,
            kind=kind,
            path=path,
            size=2,
            sha256=blob.sha256,
            blob=blob,
            expires_at=expires,
        )
    client.force_login(alice)

    page = client.get(f"/t/acme/jobs/{job.pk}/runs/1/").content.decode()
    body = client.get(f"/api/v1/teams/acme/jobs/{job.pk}/runs/1/").json()

    notebook = f"/t/acme/jobs/runs/{run.pk}/notebook/"
    download = f"/t/acme/jobs/runs/{run.pk}/files/{kept['model.pt'].pk}/"
    assert f'href="{notebook}"' in page
    assert f'href="{download}"' in page
    assert "old.txt" not in page  # expired: no longer kept
    assert body["notebook_url"] == notebook
    assert sorted(f["path"] for f in body["files"]) == ["executed.ipynb", "model.pt"]
    assert client.get(download).status_code == 200
