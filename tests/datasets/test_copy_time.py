"""A start that mounts big datasets gets time to copy them to its host: the agent's task
limits and the reconciler's patience grow with the bytes mounted (apps.notebooks.mounts
copy_allowance), so the first start of a 50 GiB dataset is not cut off and sent again
half way through its copy."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from celery.signals import before_task_publish
from django.utils import timezone

from apps.core.tenancy import team_scope
from apps.datasets.services import dataset_create
from apps.machines.agent import AGENT_TIME_LIMIT
from apps.machines.models import Host
from apps.notebooks import lifecycle, services, upkeep
from apps.notebooks.models import NotebookSession, Status
from apps.notebooks.mounts import copy_allowance, mount_add
from tests.dataset_fixtures import spec_dataset
from tests.factories import BlobFactory, DatasetVersionFactory, VersionFileFactory

pytestmark = pytest.mark.django_db(transaction=True)

GIB = 1024**3


def test_the_allowance_is_the_bytes_at_the_slowest_rate_allowed(settings: Any) -> None:
    settings.LATTICE_DATASET_COPY_MIN_RATE = 25 * 1024 * 1024
    assert copy_allowance(0) == 0
    assert copy_allowance(1) == 1
    assert copy_allowance(25 * 1024 * 1024) == 1
    assert copy_allowance(100 * GIB) == 4096


def mount_big(team: Any, actor: Any, notebook: Any, size: int) -> None:
    """A ready version of one file of ``size`` bytes (listed; its bytes are not stored:
    nothing here copies them), mounted."""
    dataset = dataset_create(team=team, actor=actor, name="Big", visibility="public")
    version = DatasetVersionFactory.create(dataset=dataset, file_count=1, total_size=size)
    blob = BlobFactory.create(sha256="b" * 64, size=size)
    VersionFileFactory.create(version=version, path="big.bin", blob=blob)
    with team_scope(team):
        mount_add(team=team, actor=actor, notebook=notebook, version=version)


def placed_not_started(team: Any, actor: Any, notebook: Any) -> NotebookSession:
    """A start the control worker placed and sent, which the host reports as starting (its
    agent busy copying) for 20 minutes now."""
    from config.celery import app as celery_app

    was_eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    try:
        session = services.notebook_start(team=team, actor=actor, notebook=notebook)
        with team_scope(team):
            lifecycle.session_place(NotebookSession.objects.get(pk=session.pk))
    finally:
        celery_app.conf.task_always_eager = was_eager
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
    """What Celery is told: the start message's own time limits (its ``timelimit`` header);
    and the links the host reads the blobs through work that long, and no longer."""
    settings.LATTICE_DATASET_COPY_MIN_RATE = 25 * 1024 * 1024
    mount_big(acme, alice, notebook, 50 * GIB)
    limits: list[Any] = []
    links: list[str] = []

    def seen(
        sender: str | None = None,
        headers: dict[str, Any] | None = None,
        body: Any = None,
        **_: Any,
    ) -> None:
        if sender == "agent.start" and headers is not None:
            limits.append(list(headers.get("timelimit") or ()))
            links.extend(url for d in body[0][1]["datasets"] for url in d["urls"].values())

    before_task_publish.connect(seen)
    try:
        placed_not_started(acme, alice, notebook)
    finally:
        before_task_publish.disconnect(seen)

    extra = 2048
    assert limits == [[AGENT_TIME_LIMIT + extra, AGENT_TIME_LIMIT - 30 + extra]]
    (link,) = links
    expires = int(dict(parse_qsl(urlsplit(link).query))["expires"])
    assert abs(expires - (time.time() + AGENT_TIME_LIMIT + extra)) < 30


# --- how far the copy has come ----------------------------------------------------------------


def test_a_copy_says_how_far_it_has_come_and_a_cached_one_says_nothing(
    served_media: Any, tmp_path: Any, monkeypatch: Any, fake_runtime: None
) -> None:
    from apps.machines import agent
    from apps.runtimes.base import Spec

    monkeypatch.setattr(agent, "COPY_REPORT_EVERY", 0.0)
    monkeypatch.setattr("apps.machines.materialise.PIECE", 64 * 1024)
    files = {f"part-{i}.bin": bytes([i]) * (300 * 1024) for i in range(4)}  # 1.2 MB
    spec = Spec(name="nb-1-s1", image="i", command=["x"], datasets=[spec_dataset("big", files)])
    said: list[tuple[str, dict[str, Any]]] = []

    def send(event: str, **data: Any) -> None:
        said.append((event, data))

    agent.with_datasets(spec, tmp_path / "cache", send=send)
    percents = [data["percent"] for event, data in said]
    assert {event for event, _ in said} == {"progress"}
    assert {data["phase"] for _, data in said} == {"copying"}
    assert percents == sorted(percents)
    assert len(percents) > 3
    assert percents[-1] == 100

    said.clear()
    agent.with_datasets(spec, tmp_path / "cache", send=send)  # built already: nothing to copy
    assert said == []


def test_the_notebook_page_hears_of_the_copy_and_the_start_counts_as_moving(
    acme, alice, host, notebook
):
    session = placed_not_started(acme, alice, notebook)

    lifecycle.on_workload_event(
        host.name, session.workload, "progress", {"phase": "copying", "percent": 42}
    )

    session.refresh_from_db()
    notebook.refresh_from_db()
    assert notebook.status_message == "Copying its datasets to the machine: 42%."
    assert session.status == Status.SCHEDULED
    assert timezone.now() - session.progressed_at < timedelta(seconds=30)
    assert upkeep.reconcile_sessions()["redispatched"] == 0
