"""The jobs API: jobs made, changed, run, re-run and cancelled; runs read with their
attempts, duration, cost and log; the token area; outsiders and viewers refused; the schema.

``engine_stub`` records the calls to the engine's (real) run_create / run_cancel."""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.tokens import token_create
from apps.core import stream
from apps.core.errors import PaymentRequiredError
from apps.jobs.costs import run_costs
from apps.jobs.models import Attempt, Job, Run
from apps.notebooks.entitlements import check_start
from apps.teams.models import TeamSecret
from tests.jobs.api_helpers import make_job, spy_engine

pytestmark = pytest.mark.django_db


@pytest.fixture
def engine_stub(monkeypatch):
    # The engine's real run_create / run_cancel, their calls recorded.
    return spy_engine(monkeypatch)


def base(team):
    return f"/api/v1/teams/{team.slug}/jobs/"


def client_of(user):
    api = APIClient()
    api.force_login(user)
    return api


def by_token(user, scopes, team=None):
    _, plaintext = token_create(user=user, name="t", scopes=scopes, team=team)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return api


BODY = {
    "name": "Nightly train",
    "command": "python train.py",
    "machine_type": "cpu-small",
    "template": "scipy",
    "env": {"EPOCHS": "3"},
    "schedule": "0 3 * * *",
}


def test_a_member_makes_reads_and_lists_a_job(acme, alice, bob, catalogue):
    TeamSecret.objects.for_team(acme).create(team=acme, name="WANDB_KEY", sealed=b"x")
    api = client_of(bob)

    made = api.post(base(acme), {**BODY, "secret_names": ["WANDB_KEY"]}, format="json")

    assert made.status_code == 201, made.json()
    body = made.json()
    assert body["slug"] == "nightly-train"
    assert body["machine_type"] == "cpu-small"
    assert body["secret_names"] == ["WANDB_KEY"]
    assert body["schedule_next_at"] is not None
    assert body["last_run"] is None
    assert body["created_by"] == "bob@example.com"
    listed = api.get(base(acme)).json()["results"]
    assert [j["name"] for j in listed] == ["Nightly train"]
    assert api.get(f"{base(acme)}{body['id']}/").json()["command"] == "python train.py"


def test_a_refusal_names_its_field(acme, alice, catalogue):
    api = client_of(alice)

    answer = api.post(base(acme), {**BODY, "secret_names": ["NOT_THERE"]}, format="json")

    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "job_invalid"
    assert list(error["fields"]) == ["secret_names"]
    assert not Job.objects.for_team(acme).exists()
    answer = api.post(base(acme), {**BODY, "schedule": "whenever"}, format="json")
    assert list(answer.json()["error"]["fields"]) == ["schedule"]


def test_patch_changes_what_is_given_and_delete_hides_it(acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice)
    api = client_of(alice)

    changed = api.patch(f"{base(acme)}{job.pk}/", {"command": "echo two"}, format="json")
    assert changed.status_code == 200
    assert changed.json()["command"] == "echo two"
    assert changed.json()["name"] == "Nightly"

    assert api.delete(f"{base(acme)}{job.pk}/").status_code == 204
    assert api.get(f"{base(acme)}{job.pk}/").status_code == 404
    assert api.get(base(acme)).json()["results"] == []


def test_run_rerun_cancel_and_read_runs(acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice)
    api = client_of(alice)

    started = api.post(f"{base(acme)}{job.pk}/run/", {}, format="json")
    assert started.status_code == 202, started.json()
    assert started.json()["number"] == 1
    assert started.json()["trigger"] == "api"
    assert started.json()["definition"]["command"] == "echo hello"

    again = api.post(
        f"{base(acme)}{job.pk}/runs/1/rerun/",
        {"changes": {"command": "echo edited"}},
        format="json",
    )
    assert again.status_code == 202
    assert again.json()["rerun_of"] == 1
    assert again.json()["definition"]["command"] == "echo edited"

    cancelled = api.post(f"{base(acme)}{job.pk}/runs/2/cancel/")
    assert cancelled.status_code == 202
    assert cancelled.json()["status"] == "cancelled"
    assert api.post(f"{base(acme)}{job.pk}/runs/2/cancel/").status_code == 409

    runs = api.get(f"{base(acme)}{job.pk}/runs/").json()["results"]
    assert [r["number"] for r in runs] == [2, 1]
    assert api.get(base(acme)).json()["results"][0]["last_run"]["number"] == 2
    assert api.get(f"{base(acme)}{job.pk}/runs/9/").status_code == 404


def test_a_run_shows_attempts_exit_code_duration_and_an_honest_cost(
    acme, alice, catalogue, engine_stub
):
    job = make_job(acme, alice)
    run = Run.objects.for_team(acme).create(
        team=acme,
        job=job,
        number=1,
        status=Run.Status.FAILED,
        definition={},
        started_at=timezone.now() - timedelta(seconds=90),
        ended_at=timezone.now(),
        exit_code=3,
    )
    Attempt.objects.for_team(acme).create(
        team=acme, run=run, number=1, machine_type=job.machine_type, exit_code=3
    )
    api = client_of(alice)

    body = api.get(f"{base(acme)}{job.pk}/runs/1/").json()

    assert body["exit_code"] == 3
    assert 89 <= body["duration_seconds"] <= 91
    assert [a["exit_code"] for a in body["attempts"]] == [3]
    # Nothing is billed here: the cost is unknown, not zero.
    assert body["cost"] is None
    assert body["outputs"] == {
        "state": "none",
        "message": "",
        "dataset_version": None,
        "model_version": None,
    }
    assert body["files"] == []
    assert body["notebook_url"] is None
    with run_costs.override(lambda runs: {r.pk: Decimal("0.0125") for r in runs}):
        assert api.get(f"{base(acme)}{job.pk}/runs/1/").json()["cost"] == "0.0125"


def test_a_run_the_plan_refuses_is_a_402(acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice)

    def refuse(team, machine_type):
        raise PaymentRequiredError(
            "Upgrade.", code="plan_machine_type", upgrade_url="/t/acme/billing/"
        )

    with check_start.override(refuse):
        answer = client_of(alice).post(f"{base(acme)}{job.pk}/run/")
    assert answer.status_code == 402
    assert answer.json()["error"]["code"] == "plan_machine_type"
    assert engine_stub == []


def test_the_log_is_the_runs_stream(acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice)
    run = Run.objects.for_team(acme).create(team=acme, job=job, number=1, definition={})
    stream.stream_publish(run.stream, {"type": "logs", "lines": ["epoch 1 loss 0.3"]})
    api = client_of(alice)

    page = api.get(f"{base(acme)}{job.pk}/runs/1/logs/").json()
    assert page["messages"][-1]["lines"] == ["epoch 1 loss 0.3"]
    assert page["last"] >= 1

    followed = api.get(f"{base(acme)}{job.pk}/runs/1/logs/?follow=1&timeout=30")
    # The engine's status message (apps.jobs.runs.run_published), once the follow is open,
    # ends it: long before its timeout.
    stream.stream_publish(run.stream, {"type": "run", "status": "succeeded"})
    began = time.monotonic()
    lines = b"".join(followed.streaming_content).decode().splitlines()
    assert time.monotonic() - began < 10
    assert '"epoch 1 loss 0.3"' in lines[0]
    assert '"succeeded"' in lines[-1]


def test_viewers_read_but_change_nothing(acme, alice, erin, catalogue, engine_stub):
    job = make_job(acme, alice)
    api = client_of(erin)

    assert api.get(f"{base(acme)}{job.pk}/").status_code == 200
    assert api.post(base(acme), BODY, format="json").status_code == 403
    assert api.patch(f"{base(acme)}{job.pk}/", {"command": "x"}, format="json").status_code == 403
    assert api.post(f"{base(acme)}{job.pk}/run/").status_code == 403
    assert engine_stub == []


def test_charlie_gets_404_for_acmes_jobs(acme, alice, charlie, globex, catalogue, engine_stub):
    job = make_job(acme, alice)
    services_run = client_of(alice).post(f"{base(acme)}{job.pk}/run/")
    assert services_run.status_code == 202
    api = client_of(charlie)

    for url in (
        base(acme),
        f"{base(acme)}{job.pk}/",
        f"{base(acme)}{job.pk}/runs/",
        f"{base(acme)}{job.pk}/runs/1/",
        f"{base(acme)}{job.pk}/runs/1/logs/",
    ):
        assert api.get(url).status_code == 404, url
    assert api.post(f"{base(acme)}{job.pk}/run/").status_code == 404
    assert api.post(f"{base(acme)}{job.pk}/runs/1/cancel/").status_code == 404
    assert api.delete(f"{base(acme)}{job.pk}/").status_code == 404
    # Through his own team's URL, acme's job id is not there either.
    assert api.get(f"{base(globex)}{job.pk}/").status_code == 404
    assert api.post(f"{base(globex)}{job.pk}/run/").status_code == 404
    assert Run.objects.for_team(acme).count() == 1
    assert Run.objects.for_team(acme).get().status == Run.Status.QUEUED


def test_tokens_need_the_jobs_area(acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice)

    assert by_token(alice, ["notebooks:write"]).get(base(acme)).status_code == 403
    reader = by_token(alice, ["jobs:read"])
    assert reader.get(base(acme)).status_code == 200
    assert reader.post(f"{base(acme)}{job.pk}/run/").status_code == 403
    writer = by_token(alice, ["jobs:write"])
    assert writer.post(f"{base(acme)}{job.pk}/run/").status_code == 202


def test_the_schema_lists_the_jobs_routes(client):
    schema = client.get("/api/v1/schema/?format=json").json()
    paths = schema["paths"]
    for route in (
        "jobs/",
        "jobs/{job_id}/",
        "jobs/{job_id}/run/",
        "jobs/{job_id}/runs/",
        "jobs/{job_id}/runs/{number}/",
        "jobs/{job_id}/runs/{number}/cancel/",
        "jobs/{job_id}/runs/{number}/rerun/",
        "jobs/{job_id}/runs/{number}/logs/",
    ):
        assert f"/api/v1/teams/{{team_slug}}/{route}" in paths, route
    components = schema["components"]["schemas"]
    assert "secret_names" in components["Job"]["properties"]
    assert {"attempts", "cost", "duration_seconds", "outputs"} <= set(
        components["RunDetail"]["properties"]
    )


def test_with_billing_on_a_run_costs_its_attempts_seconds(
    acme, alice, catalogue, priced, billing_plans, settings
):
    settings.LATTICE_BILLING = True
    job = make_job(acme, alice, machine_type="cpu-large")  # a cent a second (``priced``)
    run = Run.objects.for_team(acme).create(team=acme, job=job, number=1, definition={})
    now = timezone.now()
    # Two attempts (the first lost): each billed for its own seconds, 30 + 45.
    for number, (began, ended) in enumerate([(200, 170), (100, 55)], start=1):
        Attempt.objects.for_team(acme).create(
            team=acme,
            run=run,
            number=number,
            machine_type=job.machine_type,
            started_at=now - timedelta(seconds=began),
            finished_at=now - timedelta(seconds=ended),
        )

    body = client_of(alice).get(f"{base(acme)}{job.pk}/runs/1/").json()

    assert Decimal(body["cost"]) == Decimal("0.75")
