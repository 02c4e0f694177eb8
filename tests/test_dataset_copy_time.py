"""A start that mounts big datasets gets time to copy them to its host: the agent's task
limits and the reconciler's patience grow with the bytes mounted (apps.datasets.mounts
copy_allowance), so the first start of a 50 GiB dataset is not cut off and sent again
half way through its copy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.utils import timezone

from apps.core.tenancy import team_scope
from apps.datasets.models import DatasetVersion
from apps.datasets.mounts import copy_allowance, mount_add
from apps.datasets.services import dataset_create
from apps.machines.agent import AGENT_TIME_LIMIT
from apps.machines.models import Host
from apps.notebooks import lifecycle, services, upkeep
from apps.notebooks.models import NotebookSession, Status

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024**3


def test_the_allowance_is_the_bytes_at_the_slowest_rate_allowed(settings: Any) -> None:
    settings.LATTICE_DATASET_COPY_MIN_RATE = 25 * 1024 * 1024
    assert copy_allowance(0) == 0
    assert copy_allowance(1) == 1
    assert copy_allowance(25 * 1024 * 1024) == 1
    assert copy_allowance(100 * GIB) == 4096


def mount_big(team: Any, actor: Any, notebook: Any, size: int) -> None:
    """A ready version of ``size`` bytes (its files play no part here), mounted."""
    dataset = dataset_create(team=team, actor=actor, name="Big", visibility="public")
    version = DatasetVersion.objects.for_team(team).create(
        team=team,
        dataset=dataset,
        number=1,
        status=DatasetVersion.Status.READY,
        ready_at=timezone.now(),
        total_size=size,
    )
    with team_scope(team):
        mount_add(team=team, actor=actor, notebook=notebook, version=version)


def placed_not_started(team: Any, actor: Any, notebook: Any) -> NotebookSession:
    """A start the control worker placed and sent, which the host reports as starting (its
    agent busy copying) for 20 minutes now."""
    from config.celery import app as celery_app

    celery_app.conf.task_always_eager = False
    try:
        session = services.notebook_start(team=team, actor=actor, notebook=notebook)
        with team_scope(team):
            lifecycle.session_place(NotebookSession.objects.get(pk=session.pk))
    finally:
        celery_app.conf.task_always_eager = True
    long_ago = timezone.now() - timedelta(minutes=20)
    NotebookSession.objects.for_team(team).filter(pk=session.pk).update(
        requested_at=long_ago, progressed_at=long_ago
    )
    session = NotebookSession.objects.for_team(team).get(pk=session.pk)
    assert session.status in (Status.SCHEDULED, Status.STARTING)
    Host.objects.filter(pk=session.host_id).update(
        reported_workloads=[{"name": session.workload, "starting": True}]
    )
    return session


def test_a_start_copying_a_big_dataset_is_waited_for(acme, alice, host, notebook, settings):
    settings.LATTICE_DATASET_COPY_MIN_RATE = 25 * 1024 * 1024
    mount_big(acme, alice, notebook, 50 * GIB)  # 2048 s at 25 MiB/s
    session = placed_not_started(acme, alice, notebook)

    counts = upkeep.reconcile_sessions()

    assert (counts["redispatched"], counts["failed"]) == (0, 0)
    session.refresh_from_db()
    assert session.ended_at is None
    assert session.start_attempts == 1


def test_without_datasets_a_start_that_long_is_sent_again(acme, alice, host, notebook, settings):
    settings.LATTICE_DATASET_COPY_MIN_RATE = 25 * 1024 * 1024
    placed_not_started(acme, alice, notebook)

    counts = upkeep.reconcile_sessions()

    assert counts["redispatched"] + counts["failed"] == 1


def test_the_agents_task_limits_grow_with_the_bytes_mounted(acme, alice, host, notebook, settings):
    """What Celery is told: the start message's own time limits (its ``timelimit`` header)."""
    settings.LATTICE_DATASET_COPY_MIN_RATE = 25 * 1024 * 1024
    mount_big(acme, alice, notebook, 50 * GIB)
    limits: list[Any] = []

    def seen(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
        if sender == "agent.start" and headers is not None:
            limits.append(list(headers.get("timelimit") or ()))

    before_task_publish.connect(seen)
    try:
        placed_not_started(acme, alice, notebook)
    finally:
        before_task_publish.disconnect(seen)

    extra = 2048
    assert limits == [[AGENT_TIME_LIMIT + extra, AGENT_TIME_LIMIT - 30 + extra]]
