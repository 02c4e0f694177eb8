"""Adversarial review of issue 17 (jobs): each test asserts the CORRECT behaviour and is a
strict xfail while the defect it names is on main (the reason starts with the finding id).
Fixing the defect turns the test into an XPASS (a failure): drop the mark then."""

from __future__ import annotations

import contextlib

import pytest

from apps.core.tenancy import team_scope
from apps.jobs import services, spec
from apps.jobs.errors import JobError
from apps.jobs.sources import runner_command
from apps.machines.logship import LogShipper
from apps.teams.secrets import mask, mask_values, secret_set
from tests.dataset_fixtures import make_version
from tests.jobs.api_helpers import make_job, spy_engine

pytestmark = pytest.mark.django_db


def test_r1_public_input_of_another_team_reaches_the_spec(
    acme, alice, globex, catalogue, media, monkeypatch
):
    spy_engine(monkeypatch)  # the real run_create; nothing is placed in a test transaction
    public = make_version(globex, "Open", {"d.csv": b"4"}, visibility="public")
    job = make_job(acme, alice, inputs=[{"name": "open", "version": public.pk}])
    run = services.job_run(team=acme, actor=alice, job=job)

    # attempt_dispatch builds the spec inside team_scope(run.team_id): the same here.
    with team_scope(acme):
        datasets = spec.run_inputs(run)

    assert [d["version_id"] for d in datasets] == [public.pk]
    assert datasets[0]["files"], "the public version's files are mounted"


def test_r2_token_in_git_url_user_name_is_not_printed():
    token = "ghp_R2reviewTokenValue0123456789"
    definition = {
        "source": "git",
        "git_url": f"https://{token}@github.com/acme/private.git",
        "git_ref": "main",
        "entrypoint": "command",
        "command": "true",
    }
    script = runner_command(definition, run_id=1)[2]
    echoed = [line for line in script.splitlines() if line.strip().startswith("echo")]

    assert echoed, "the runner says what it fetches"
    assert not [line for line in echoed if token in line], echoed


def test_r3_a_secret_cut_with_a_long_line_is_still_masked(
    acme, alice, settings, django_capture_on_commit_callbacks
):
    value = "s3cr3t-R3-" + "k" * 40  # 50 characters
    with django_capture_on_commit_callbacks(execute=True):
        secret_set(team=acme, actor=alice, name="API_TOKEN", value=value)
    longest = settings.LATTICE_LOG_LINE_MAX_CHARS
    # A workload prints a long line (a JSON config, say) that ends with the token.
    line = "x" * (longest - 30) + value
    # The agent's shipper cuts it (apps.machines.logship), then workload_logs masks it.
    shipped = LogShipper._cut(line)
    published = mask([shipped], mask_values(acme.pk))[0]

    assert value[:30] not in published


def test_r4_a_huge_env_value_is_refused_when_saved(acme, alice, catalogue):
    with pytest.raises(JobError) as refused:
        make_job(acme, alice, env={"BIG": "x" * (200 * 1024)})

    assert refused.value.field == "env"


def test_r5_huge_parameters_are_refused_when_saved(acme, alice, catalogue):
    with pytest.raises(JobError) as refused:
        make_job(
            acme,
            alice,
            source="git",
            git_url="https://git.example.com/acme/r.git",
            entrypoint="notebook",
            notebook_path="train.ipynb",
            parameters={"blob": "x" * (200 * 1024)},
        )

    assert refused.value.field == "parameters"


def test_r6_run_changes_naming_a_job_field_are_refused(acme, alice, catalogue, monkeypatch):
    spy_engine(monkeypatch)
    job = make_job(acme, alice)

    with pytest.raises(JobError) as refused:
        services.job_run(team=acme, actor=alice, job=job, changes={"concurrency": 5})

    assert refused.value.field == "concurrency"


def test_r7_cancel_while_saving_outputs_leaves_no_open_save(acme, alice, catalogue, monkeypatch):
    from django.utils import timezone

    from apps.jobs import outputs
    from apps.jobs.errors import JobConflictError
    from apps.jobs.models import Attempt, Job, Run
    from apps.models.models import SaveTicket
    from tests.factories import HostFactory

    # The host tasks outputs_collect queues on commit are recorded, never run.
    sent: list[dict[str, object]] = []
    monkeypatch.setattr(outputs.agent_save_folder, "apply_async", lambda **kw: sent.append(kw))
    job = make_job(acme, alice)  # output "artifacts" (the default): one files save
    run = Run.objects.for_team(acme).create(
        team=acme,
        job=job,
        number=1,
        status=Run.Status.RUNNING,
        triggered_by=alice,
        definition={field: getattr(job, field) for field in Job.DEFINITION_FIELDS},
        started_at=timezone.now(),
    )
    attempt = Attempt.objects.for_team(acme).create(
        team=acme,
        run=run,
        number=1,
        machine_type=job.machine_type,
        status=Attempt.Status.EXITED,
        host=HostFactory.create(),
        runtime_state={"name": "jb-r7"},
        exit_code=0,
    )
    # The engine's way on exit 0: the saves are asked for; the run says "Saving outputs".
    assert outputs.outputs_collect(run, attempt) is True

    # Refusing it (the process already finished) is a correct answer too.
    with contextlib.suppress(JobConflictError):
        services.run_cancel(team=acme, actor=alice, run=run)
    run.refresh_from_db()

    open_saves = SaveTicket.objects.for_team(acme).filter(
        source_id=run.pk, finished_at__isnull=True
    )
    if run.ended_at is not None:
        assert run.outputs_state != Run.Outputs.SAVING
        assert not open_saves.exists()


def test_r8_due_times_while_paused_are_not_owed_on_resume(acme, alice, catalogue, monkeypatch):
    from datetime import UTC, datetime

    from django.utils import timezone

    from apps.jobs import schedules
    from apps.jobs.models import Run

    spy_engine(monkeypatch)
    clock = {"now": datetime(2026, 12, 10, 0, 0, tzinfo=UTC)}
    monkeypatch.setattr(timezone, "now", lambda: clock["now"])
    job = make_job(acme, alice, schedule="0 3 * * *")  # 03:00 UTC every day
    services.job_update(team=acme, actor=alice, job=job, schedule_paused=True)

    # Paused over two 03:00s; resumed at noon on the 12th.
    clock["now"] = datetime(2026, 12, 12, 12, 0, tzinfo=UTC)
    assert schedules.schedules_tick(now=clock["now"])["started"] == 0
    services.job_update(team=acme, actor=alice, job=job, schedule_paused=False)
    clock["now"] = datetime(2026, 12, 12, 12, 1, tzinfo=UTC)
    schedules.schedules_tick(now=clock["now"])

    # The next due time is 03:00 on the 13th: nothing runs at 12:01 on the 12th.
    assert not Run.objects.for_team(acme).filter(job=job).exists()


def test_r9_a_password_in_the_git_url_is_refused(acme, alice, catalogue):
    with pytest.raises(JobError) as refused:
        make_job(
            acme,
            alice,
            source="git",
            git_url="https://ci:glpat-R9secretTokenValue@gitlab.example.com/acme/r.git",
        )

    assert refused.value.field == "git_url"


def test_r10_a_notebook_job_runs_where_the_notebooks_files_are(acme, alice, catalogue):
    from django.utils import timezone

    from apps.jobs import runs
    from apps.jobs.models import Job, Run
    from apps.notebooks.models import NotebookSession
    from tests.factories import HostFactory
    from tests.notebook_fixtures import make_notebook

    # The scheduler's first pick (by id, then by name) is the host without the files.
    HostFactory.create(name="r10-a-other")
    holder = HostFactory.create(name="r10-z-holder")
    notebook = make_notebook(acme, alice, "Prep")
    # The notebook last ran on ``holder``: its volume (its files) is there only.
    NotebookSession.objects.for_team(acme).create(
        team=acme,
        notebook=notebook,
        machine_type=catalogue["cpu-small"],
        template="scipy",
        image="lattice/notebook:test",
        status="stopped",
        host=holder,
        ended_at=timezone.now(),
    )
    job = make_job(acme, alice, source="notebook", notebook=notebook.pk, command="ls")
    hosts = set()
    for number in range(1, 9):
        run = Run.objects.for_team(acme).create(
            team=acme,
            job=job,
            number=number,
            status=Run.Status.QUEUED,
            triggered_by=alice,
            definition={field: getattr(job, field) for field in Job.DEFINITION_FIELDS},
        )
        attempt = runs.attempt_new(run)
        runs.attempt_place(attempt)
        attempt.refresh_from_db()
        hosts.add(attempt.host.name if attempt.host else None)

    assert hosts == {"r10-z-holder"}


def test_r11_a_replaced_secrets_old_value_stays_masked(
    acme, alice, django_capture_on_commit_callbacks
):
    old, new = "old-R11-token-value-0123456789", "new-R11-token-value-9876543210"
    with django_capture_on_commit_callbacks(execute=True):
        secret_set(team=acme, actor=alice, name="API_TOKEN", value=old)
    # A run starts now with API_TOKEN=old in its environment (secrets_resolve) and keeps
    # running; meanwhile an admin rotates the token.
    assert mask([f"token={old}"], mask_values(acme.pk)) == ["token=****"]
    with django_capture_on_commit_callbacks(execute=True):
        secret_set(team=acme, actor=alice, name="API_TOKEN", value=new)

    # The running workload prints the value it was given.
    assert mask([f"token={old}"], mask_values(acme.pk)) == ["token=****"]


def test_r12_the_free_plans_one_machine_at_a_time_holds_for_job_runs(
    acme, alice, catalogue, billing_plans, settings, monkeypatch
):
    from apps.core.errors import PaymentRequiredError
    from apps.jobs import runs
    from apps.jobs.models import Attempt

    settings.LATTICE_BILLING = True  # acme is on the default plan: Free, one machine at once
    spy_engine(monkeypatch)
    jobs = [
        make_job(acme, alice, f"GPU job {n}", machine_type="free-gpu", timeout_seconds=0)
        for n in range(3)
    ]
    for job in jobs:
        # Refusing the run (402) is a correct answer; so is leaving it queued.
        with contextlib.suppress(PaymentRequiredError):
            services.job_run(team=acme, actor=alice, job=job)
        runs.start_queued(job.pk, acme)  # what the run's commit queues

    holding = Attempt.objects.for_team(acme).filter(ended_at__isnull=True).count()
    assert holding <= 1


def test_r13_the_free_plans_six_hour_cap_bounds_a_job_run(
    acme, alice, catalogue, billing_plans, settings, monkeypatch
):
    from datetime import timedelta

    from apps.core.errors import PaymentRequiredError
    from apps.jobs import runs
    from apps.jobs.models import Attempt, Run

    settings.LATTICE_BILLING = True  # Free: max_session_hours 6
    spy_engine(monkeypatch)
    job = make_job(acme, alice, machine_type="free-cpu", timeout_seconds=0)
    try:
        run = services.job_run(team=acme, actor=alice, job=job)
    except (JobError, PaymentRequiredError):
        return  # refusing a run with no limit on this plan is correct too
    runs.start_queued(job.pk, acme)
    run = Run.objects.for_team(acme).get(pk=run.pk)
    attempt = Attempt.objects.for_team(acme).get(run=run)
    runs._on_started(run, attempt, {})  # its host says the container started

    run.refresh_from_db()
    assert run.deadline_at is not None
    assert run.deadline_at - run.started_at <= timedelta(hours=6)


def test_r14_a_reached_spend_cap_stops_paid_job_runs_too(
    acme, alice, priced, billing_plans, settings, django_capture_on_commit_callbacks
):
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from apps.billing import metering
    from apps.billing.models import BillingAccount
    from apps.jobs.models import Attempt, Job, Run

    settings.LATTICE_BILLING = True
    job = make_job(acme, alice, machine_type=priced.slug)  # cpu-large, a cent a second
    now = timezone.now()
    run = Run.objects.for_team(acme).create(
        team=acme,
        job=job,
        number=1,
        status=Run.Status.RUNNING,
        triggered_by=alice,
        definition={field: getattr(job, field) for field in Job.DEFINITION_FIELDS},
        started_at=now - timedelta(minutes=10),
    )
    attempt = Attempt.objects.for_team(acme).create(
        team=acme,
        run=run,
        number=1,
        machine_type=priced,
        status=Attempt.Status.RUNNING,
        started_at=now - timedelta(minutes=10),  # $6 so far
    )
    BillingAccount.objects.for_team(acme).update_or_create(
        team=acme, defaults={"spend_cap": Decimal("5"), "stop_at_cap": True}
    )

    with team_scope(acme), django_capture_on_commit_callbacks(execute=True):
        reached = metering.spend_cap_enforce(acme, now=now)

    assert reached == 100, "the job's $6 count against the $5 cap"
    run.refresh_from_db()
    attempt.refresh_from_db()
    assert run.cancel_requested_at is not None or run.ended_at is not None
    assert attempt.status in (Attempt.Status.STOPPING, Attempt.Status.ENDED)


def test_r15_a_scheduled_run_saves_outputs_after_its_author_left(
    acme, alice, bob, catalogue, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    from apps.jobs import outputs, schedules
    from apps.jobs.models import Attempt, Run
    from apps.teams.models import Membership
    from tests.factories import HostFactory

    spy_engine(monkeypatch)
    sent: list[dict[str, object]] = []
    monkeypatch.setattr(outputs.agent_save_folder, "apply_async", lambda **kw: sent.append(kw))
    job = make_job(acme, bob, "Nightly export", schedule="* * * * *")  # bob is a member
    Membership.objects.for_team(acme).filter(user=bob).delete()  # bob leaves the team

    schedules.schedules_tick(now=timezone.now() + timedelta(minutes=2))
    run = Run.objects.for_team(acme).filter(job=job).first()
    if run is None:
        return  # refusing the schedule while nobody can save its outputs is correct too
    attempt = Attempt.objects.for_team(acme).create(
        team=acme,
        run=run,
        number=1,
        machine_type=job.machine_type,
        status=Attempt.Status.EXITED,
        host=HostFactory.create(),
        runtime_state={"name": "jb-r15"},
        exit_code=0,
    )

    # The command exited 0: its /outputs are asked of the host, not refused.
    assert outputs.outputs_collect(run, attempt) is True


@pytest.mark.django_db(transaction=True)
def test_r16_a_git_run_records_the_commit_it_ran(acme, alice, process_host, no_outputs, tmp_path):
    from apps.jobs import runs
    from apps.jobs.models import Job, Run
    from tests.jobs.engine_fixtures import make_job as engine_job
    from tests.jobs.engine_fixtures import wait_for
    from tests.jobs.gitserver import git, git_server

    served = tmp_path / "srv"
    served.mkdir()
    git(served, "init", "-q", "--bare", "-b", "main", "project.git")
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "run.sh").write_text("echo r16\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "r16")
    sha = git(work, "rev-parse", "HEAD")
    git(work, "push", "-q", str(served / "project.git"), "main")
    secret_set(team=acme, actor=alice, name="REPO_TOKEN", value="r16-token")

    with git_server(served, address="127.0.0.1", token="r16-token") as server:
        job = engine_job(
            acme,
            alice,
            "sh run.sh",
            source=Job.Source.GIT,
            git_url=server.url("project.git"),
            git_ref="main",
            git_secret="REPO_TOKEN",
        )
        run = runs.run_create(job, trigger=Run.Trigger.MANUAL, actor=alice)
        run = wait_for(run, Run.Status.SUCCEEDED, Run.Status.FAILED)

    assert run.status == Run.Status.SUCCEEDED, run.status_message
    assert run.git_commit == sha
