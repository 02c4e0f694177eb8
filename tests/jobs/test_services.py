"""Job services: what they accept, what they refuse (naming the field), and that a run,
a re-run and a cancel go through the engine's entry points with the right definition.

``engine_stub`` records the calls to the engine's (real) run_create / run_cancel."""

from __future__ import annotations

import pytest

from apps.core.errors import PaymentRequiredError, PermissionDeniedError
from apps.core.models import AuditEntry
from apps.core.tenancy import team_scope
from apps.jobs import runs, services
from apps.jobs.errors import JobConflictError, JobError, JobNotFoundError
from apps.jobs.models import Job, Run
from apps.machines.models import MachineType
from apps.notebooks.entitlements import check_start
from apps.teams.models import TeamSecret
from tests.dataset_fixtures import make_version
from tests.jobs.api_helpers import make_job, spy_engine
from tests.notebook_fixtures import make_notebook

pytestmark = pytest.mark.django_db


@pytest.fixture
def engine_stub(monkeypatch):
    # The engine's real run_create / run_cancel, their calls recorded.
    return spy_engine(monkeypatch)


def _secret(team, name):
    return TeamSecret.objects.for_team(team).create(team=team, name=name, sealed=b"x")


def _refused(field, **fields):
    def check(team, actor):
        with pytest.raises(JobError) as caught:
            make_job(team, actor, **fields)
        assert caught.value.field == field, str(caught.value)
        return caught.value

    return check


def test_a_job_is_saved_with_its_definition_and_audited(acme, alice, catalogue):
    job = make_job(acme, alice, "Train model", env={"EPOCHS": 3}, schedule="0 3 * * *")

    assert job.slug == "train-model"
    assert job.machine_type.slug == "cpu-small"
    assert job.env == {"EPOCHS": "3"}
    assert job.schedule == "0 3 * * *"
    assert job.schedule_last_at is not None  # due times before it was saved are not owed
    assert runs.job_definition(job)["command"] == "echo hello"
    with team_scope(acme):
        assert AuditEntry.objects.filter(action="job.created", target="Train model").exists()


@pytest.mark.parametrize(
    ("field", "fields"),
    [
        ("name", {"name": " "}),
        ("machine_type", {"machine_type": "no-such-type"}),
        ("template", {"template": "custom"}),
        ("command", {"command": ""}),
        ("source", {"source": "ftp"}),
        ("notebook", {"source": "notebook"}),
        ("git_url", {"source": "git", "git_url": "file:///etc"}),
        ("git_url", {"source": "git", "git_url": "ext::sh -c touch% /tmp/x"}),
        ("git_url", {"source": "git", "git_url": "--upload-pack=touch /tmp/x"}),
        ("git_ref", {"source": "git", "git_url": "https://h/r.git", "git_ref": "--exec=x"}),
        ("git_secret", {"source": "git", "git_url": "https://h/r.git", "git_secret": "NOPE"}),
        (
            "notebook_path",
            {
                "entrypoint": "notebook",
                "source": "git",
                "git_url": "https://h/r.git",
                "notebook_path": "../x.ipynb",
            },
        ),
        ("source", {"entrypoint": "notebook", "notebook_path": "x.ipynb"}),
        ("parameters", {"parameters": {"not a name": 1}}),
        ("env", {"env": {"LATTICE_RUN_ID": "1"}}),
        ("env", {"env": {"1BAD": "x"}}),
        ("secrets", {"secrets": ["MISSING"]}),
        ("inputs", {"inputs": [{"name": "x", "version": 999999}]}),
        ("output_name", {"output": "dataset"}),
        ("timeout_seconds", {"timeout_seconds": -1}),
        ("max_attempts", {"max_attempts": 0}),
        ("concurrency", {"concurrency": 0}),
        ("schedule", {"schedule": "every day"}),
        ("schedule", {"schedule": "61 * * * *"}),
        ("schedule", {"schedule": "0 0 31 2 *"}),
        ("schedule_timezone", {"schedule": "0 3 * * *", "schedule_timezone": "Mars/Base"}),
    ],
)
def test_a_bad_field_is_refused_by_name(acme, alice, catalogue, field, fields):
    _refused(field, **fields)(acme, alice)
    assert not Job.objects.for_team(acme).exists()


def test_a_retired_machine_type_is_refused(acme, alice, catalogue):
    MachineType.objects.filter(slug="cpu-small").update(active=False)
    _refused("machine_type")(acme, alice)


def test_a_name_is_unique_among_live_jobs(acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice, "Nightly")
    _refused("name", name="nightly")(acme, alice)

    services.job_delete(team=acme, actor=alice, job=job)
    assert make_job(acme, alice, "Nightly").pk != job.pk


def test_a_job_cannot_name_another_teams_secret_or_notebook(
    acme, alice, globex, charlie, catalogue
):
    _secret(globex, "GLOBEX_TOKEN")
    theirs = make_notebook(globex, charlie, "Theirs")

    _refused("secrets", secrets=["GLOBEX_TOKEN"])(acme, alice)
    _refused("notebook", source="notebook", notebook=theirs.pk)(acme, alice)
    _secret(acme, "GLOBEX_TOKEN")
    assert make_job(acme, alice, secrets=["GLOBEX_TOKEN"]).secrets == ["GLOBEX_TOKEN"]


def test_inputs_are_dataset_versions_the_team_may_read(acme, alice, globex, catalogue, media):
    ours = make_version(acme, "Churn", {"a.csv": b"1"})
    uploading = make_version(acme, "Later", {"b.csv": b"2"}, ready=False)
    private = make_version(globex, "Secret", {"c.csv": b"3"})
    public = make_version(globex, "Open", {"d.csv": b"4"}, visibility="public")

    _refused("inputs", inputs=[{"version": private.pk}])(acme, alice)
    _refused("inputs", inputs=[{"version": uploading.pk}])(acme, alice)
    _refused(
        "inputs", inputs=[{"name": "x", "version": ours.pk}, {"name": "x", "version": public.pk}]
    )(acme, alice)
    job = make_job(acme, alice, inputs=[{"version": ours.pk}, {"name": "o", "version": public.pk}])
    assert job.inputs == [
        {"name": ours.dataset.slug, "version": ours.pk},
        {"name": "o", "version": public.pk},
    ]


def test_sources_notebook_and_git(acme, alice, catalogue):
    notebook = make_notebook(acme, alice, "Work")
    _secret(acme, "DEPLOY_KEY")

    from_notebook = make_job(
        acme,
        alice,
        "A",
        source="notebook",
        notebook=notebook,
        entrypoint="notebook",
        notebook_path="train.ipynb",
        parameters={"lr": 0.1},
    )
    from_git = make_job(
        acme,
        alice,
        "B",
        source="git",
        git_url="git@github.com:acme/x.git",
        git_ref="v1.2",
        git_secret="DEPLOY_KEY",
    )

    assert from_notebook.notebook_id == notebook.pk
    assert from_notebook.parameters == {"lr": 0.1}
    assert (from_git.git_url, from_git.git_ref, from_git.git_secret) == (
        "git@github.com:acme/x.git",
        "v1.2",
        "DEPLOY_KEY",
    )


def test_an_update_changes_only_what_is_given_and_is_audited(acme, alice, catalogue):
    job = make_job(acme, alice, schedule="0 3 * * *")
    before = job.schedule_last_at

    job = services.job_update(
        team=acme,
        actor=alice,
        job=job,
        command="echo bye",
        machine_type="cpu-medium"
        if MachineType.objects.filter(slug="cpu-medium").exists()
        else "cpu-small",
    )
    assert job.command == "echo bye"
    assert job.schedule_last_at == before
    with pytest.raises(JobError) as caught:
        services.job_update(team=acme, actor=alice, job=job, timeout_seconds=10**9)
    assert caught.value.field == "timeout_seconds"
    with team_scope(acme):
        entry = AuditEntry.objects.get(action="job.updated")
    assert "command" in entry.data["fields"]


def test_viewers_and_outsiders_change_nothing(acme, alice, erin, charlie, globex, catalogue):
    job = make_job(acme, alice)
    with pytest.raises(PermissionDeniedError):
        make_job(acme, erin, "Mine")
    with pytest.raises(PermissionDeniedError):
        services.job_update(team=acme, actor=erin, job=job, command="x")
    with pytest.raises(PermissionDeniedError):
        services.job_run(team=acme, actor=charlie, job=job)
    assert Job.objects.for_team(acme).get().command == "echo hello"


def test_a_run_copies_the_definition_and_is_audited(acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice)

    run = services.job_run(team=acme, actor=alice, job=job)

    assert engine_stub == [("create", run)]
    assert run.trigger == Run.Trigger.MANUAL
    assert run.definition["command"] == "echo hello"
    with team_scope(acme):
        assert AuditEntry.objects.get(action="job.run_started").data["run"] == 1


def test_a_run_with_changes_edits_this_run_only(acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice)

    run = services.job_run(team=acme, actor=alice, job=job, changes={"command": "echo edited"})

    assert run.definition["command"] == "echo edited"
    job.refresh_from_db()
    assert job.command == "echo hello"
    with pytest.raises(JobError):
        services.job_run(team=acme, actor=alice, job=job, changes={"env": {"LATTICE_X": "1"}})


def test_a_run_is_refused_when_the_plan_refuses(acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice)

    def refuse(team, machine_type):
        raise PaymentRequiredError("Your plan does not include this machine.", code="plan_x")

    with check_start.override(refuse), pytest.raises(PaymentRequiredError):
        services.job_run(team=acme, actor=alice, job=job)
    assert engine_stub == []


def test_a_run_is_refused_once_a_named_secret_is_gone(acme, alice, catalogue, engine_stub):
    _secret(acme, "TOKEN")
    job = make_job(acme, alice, secrets=["TOKEN"])
    TeamSecret.objects.for_team(acme).filter(name="TOKEN").delete()

    with pytest.raises(JobError) as caught:
        services.job_run(team=acme, actor=alice, job=job)
    assert caught.value.field == "secrets"
    assert engine_stub == []


def test_a_rerun_takes_the_old_definition_edited(acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice)
    first = services.job_run(team=acme, actor=alice, job=job)
    services.job_update(team=acme, actor=alice, job=job, command="echo new")

    again = services.run_rerun(team=acme, actor=alice, run=first, changes={"env": {"A": "1"}})

    assert again.rerun_of == first
    assert again.trigger == Run.Trigger.RERUN
    assert again.definition["command"] == "echo hello"
    assert again.definition["env"] == {"A": "1"}


def test_cancel_goes_to_the_engine_once_and_an_ended_run_is_a_conflict(
    acme, alice, catalogue, engine_stub
):
    job = make_job(acme, alice)
    run = services.job_run(team=acme, actor=alice, job=job)

    services.run_cancel(team=acme, actor=alice, run=run)

    assert [c for c, _ in engine_stub] == ["create", "cancel"]
    with pytest.raises(JobConflictError):
        services.run_cancel(team=acme, actor=alice, run=run)
    with team_scope(acme):
        assert AuditEntry.objects.filter(action="job.run_cancelled").count() == 1


def test_deleting_a_job_cancels_its_open_runs_and_hides_it(acme, alice, catalogue, engine_stub):
    job = make_job(acme, alice)
    run = services.job_run(team=acme, actor=alice, job=job)

    services.job_delete(team=acme, actor=alice, job=job)

    assert ("cancel", run) in engine_stub
    with pytest.raises(JobNotFoundError):
        services.job_run(team=acme, actor=alice, job=job)
    with pytest.raises(JobNotFoundError):
        services.job_update(team=acme, actor=alice, job=job, command="x")
