"""Cron schedules: a due job gets a run, once per due time whoever ticks; a job whose run
is still open is skipped (audited); time zones and pauses are honoured.

``engine_stub`` records the calls to the engine's (real) run_create; how a run runs is
tests/jobs/test_runs.py's."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from django.db import connection

from apps.core.audit import audit_describe
from apps.core.errors import PaymentRequiredError
from apps.core.models import AuditEntry
from apps.core.tenancy import team_scope
from apps.jobs import schedules, services
from apps.jobs.models import Job, Run
from apps.notebooks.entitlements import check_start
from tests.jobs.api_helpers import make_job, spy_engine

pytestmark = pytest.mark.django_db


@pytest.fixture
def engine_stub(monkeypatch):
    # The engine's real run_create / run_cancel, their calls recorded.
    return spy_engine(monkeypatch)


def at(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _scheduled(acme, alice, schedule="0 3 * * *", zone="UTC", last="2026-12-01T00:00"):
    job = make_job(acme, alice, schedule=schedule, schedule_timezone=zone)
    Job.objects.for_team(acme).filter(pk=job.pk).update(schedule_last_at=at(last))
    return job


def test_next_due_in_the_jobs_time_zone():
    assert schedules.next_due("0 3 * * *", "UTC", at("2026-12-01T00:00")) == at("2026-12-01T03:00")
    # 03:00 in Paris (UTC+1 in December) is 02:00 UTC.
    assert schedules.next_due("0 3 * * *", "Europe/Paris", at("2026-12-01T00:00")) == at(
        "2026-12-01T02:00"
    )
    assert schedules.next_due("*/15 * * * *", "UTC", at("2026-12-01T00:00")) == at(
        "2026-12-01T00:15"
    )


def test_a_due_schedule_starts_a_run_once(acme, alice, catalogue, engine_stub):
    job = _scheduled(acme, alice)

    assert schedules.schedules_tick(now=at("2026-12-01T02:59")) == {
        "started": 0,
        "skipped": 0,
        "refused": 0,
    }
    assert schedules.schedules_tick(now=at("2026-12-01T03:00:10"))["started"] == 1
    assert schedules.schedules_tick(now=at("2026-12-01T03:00:40"))["started"] == 0

    run = Run.objects.for_team(acme).get(job=job)
    assert run.trigger == Run.Trigger.SCHEDULE
    assert run.triggered_by is None
    job.refresh_from_db()
    assert job.schedule_last_at == at("2026-12-01T03:00")


def test_due_times_missed_are_acted_on_once(acme, alice, catalogue, engine_stub):
    job = _scheduled(acme, alice, schedule="*/10 * * * *")

    schedules.schedules_tick(now=at("2026-12-01T05:05"))

    assert Run.objects.for_team(acme).filter(job=job).count() == 1
    job.refresh_from_db()
    assert job.schedule_last_at == at("2026-12-01T05:00")


def test_a_schedule_that_would_overlap_is_skipped(acme, alice, catalogue, engine_stub):
    job = _scheduled(acme, alice, schedule="0 * * * *")
    schedules.schedules_tick(now=at("2026-12-01T01:00:05"))
    first = Run.objects.for_team(acme).get(job=job)
    first.status = Run.Status.RUNNING
    first.save()

    assert schedules.schedules_tick(now=at("2026-12-01T02:00:05"))["skipped"] == 1

    assert Run.objects.for_team(acme).filter(job=job).count() == 1
    with team_scope(acme):
        skip = AuditEntry.objects.get(action="job.schedule_skipped")
    assert skip.data["run"] == 1
    assert audit_describe(skip) == (
        "The schedule of Nightly skipped a run: run 1 was still running"
    )
    # Once the run has ended, the next due time starts one again.
    first.status = Run.Status.SUCCEEDED
    first.save()
    assert schedules.schedules_tick(now=at("2026-12-01T03:00:05"))["started"] == 1


def test_paused_and_deleted_jobs_are_left_alone(acme, alice, catalogue, engine_stub):
    paused = _scheduled(acme, alice)
    services.job_update(team=acme, actor=alice, job=paused, schedule_paused=True)
    gone = make_job(acme, alice, "Gone", schedule="0 3 * * *")
    Job.objects.for_team(acme).filter(pk=gone.pk).update(schedule_last_at=at("2026-12-01T00:00"))
    services.job_delete(team=acme, actor=alice, job=gone)

    schedules.schedules_tick(now=at("2026-12-01T04:00"))

    assert not Run.objects.for_team(acme).exists()


def test_a_refused_run_is_audited_and_the_due_time_spent(acme, alice, catalogue, engine_stub):
    job = _scheduled(acme, alice)

    def refuse(team, machine_type):
        raise PaymentRequiredError("The spend cap is reached.", code="spend_cap")

    with check_start.override(refuse):
        assert schedules.schedules_tick(now=at("2026-12-01T03:01"))["refused"] == 1
    assert schedules.schedules_tick(now=at("2026-12-01T03:02"))["refused"] == 0

    assert not Run.objects.for_team(acme).filter(job=job).exists()
    with team_scope(acme):
        entry = AuditEntry.objects.get(action="job.schedule_refused")
    assert "spend cap" in entry.data["reason"]


@pytest.mark.django_db(transaction=True)
def test_two_ticks_at_once_start_one_run(acme, alice, catalogue, engine_stub):
    job = _scheduled(acme, alice)
    now = at("2026-12-01T03:00:10")
    barrier = threading.Barrier(2)
    results = []

    def tick():
        try:
            barrier.wait()
            results.append(schedules.schedules_tick(now=now)["started"])
        finally:
            connection.close()

    threads = [threading.Thread(target=tick) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [0, 1]
    assert Run.objects.for_team(acme).filter(job=job).count() == 1


def test_the_task_is_registered_under_the_beats_name():
    from celery import current_app
    from django.conf import settings

    assert settings.CELERY_BEAT_SCHEDULE["jobs-schedules"]["task"] == "jobs.schedules"
    assert "jobs.schedules" in current_app.tasks
