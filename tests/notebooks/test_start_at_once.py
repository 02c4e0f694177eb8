"""A start placed in the click's own transaction, and the "ready" event's cost.

Celery runs eagerly here; which tasks ran is read from Celery's own task_prerun signal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from celery.signals import task_prerun

from apps.machines.models import PlacementRequest
from apps.machines.reports import workload_event
from apps.notebooks import services
from apps.notebooks.models import NotebookEvent, NotebookSession, Status
from tests.notebook_fixtures import make_host, make_notebook

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.django_db(transaction=True)

PLACE_TASK = "notebooks.session_place"


@pytest.fixture
def tasks_run() -> Iterator[list[str]]:
    names: list[str] = []

    def record(sender=None, task=None, **kwargs):
        names.append(task.name)

    task_prerun.connect(record, weak=False)
    yield names
    task_prerun.disconnect(record)


def start(team, actor, nb) -> NotebookSession:
    session = services.notebook_start(team=team, actor=actor, notebook=nb)
    return NotebookSession.objects.for_team(team).get(pk=session.pk)


def test_a_start_with_room_is_placed_without_the_placement_task(
    acme, alice, fake_runtime, catalogue, tasks_run
):
    make_host(cpus=2, memory_gib=8)
    notebook = make_notebook(acme, alice, "One")

    session = start(acme, alice, notebook)

    assert session.status == Status.RUNNING
    assert PLACE_TASK not in tasks_run
    assert "agent.start" in tasks_run
    request = PlacementRequest.objects.get(workload=session.workload)
    assert request.status == PlacementRequest.Status.PLACED
    assert request.placement_id == session.placement_id
    phases = list(
        NotebookEvent.objects.for_team(acme)
        .filter(session=session)
        .order_by("pk")
        .values_list("phase", flat=True)
    )
    assert phases[:2] == ["queued", "placed"]
    assert phases[-1] == "ready"


def test_a_start_behind_the_line_goes_through_the_placement_task_in_order(
    acme, alice, fake_runtime, catalogue, tasks_run
):
    make_host(cpus=2, memory_gib=8)  # room for one cpu-small
    first = make_notebook(acme, alice, "One")
    second = make_notebook(acme, alice, "Two")
    third = make_notebook(acme, alice, "Three")
    start(acme, alice, first)
    tasks_run.clear()

    waiting = start(acme, alice, second)
    assert PLACE_TASK in tasks_run
    assert waiting.status == Status.QUEUED
    behind = start(acme, alice, third)
    assert behind.status == Status.QUEUED

    # Room frees: the head of the line gets it, not the one behind it.
    services.notebook_stop(team=acme, actor=alice, notebook=first)
    waiting.refresh_from_db()
    behind.refresh_from_db()
    assert waiting.status == Status.RUNNING
    assert behind.status == Status.QUEUED
    # A new start while someone waits does not overtake them, even once room frees.
    tasks_run.clear()
    services.notebook_stop(team=acme, actor=alice, notebook=second)
    behind.refresh_from_db()
    assert behind.status == Status.RUNNING


def test_ready_turns_running_in_few_queries(
    acme, alice, fake_runtime, catalogue, django_assert_max_num_queries
):
    host = make_host(cpus=2, memory_gib=8)
    notebook = make_notebook(acme, alice, "One")
    session = start(acme, alice, notebook)
    assert session.status == Status.RUNNING
    # Back to just before its "ready", as the agent would find it.
    NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(
        status=Status.STARTING, ready_at=None
    )

    # Placed there?, its team, the notebook's lock, the session's lock, the session, the
    # notebook, the event: 7 statements, and BEGIN and COMMIT (11 before: the session saved
    # twice, its notebook looked up before its lock).
    with django_assert_max_num_queries(9):
        workload_event(host, session.workload, "ready", {"endpoint": session.endpoint})

    session.refresh_from_db()
    assert session.status == Status.RUNNING
    assert session.ready_at is not None
    notebook.refresh_from_db()
    assert notebook.status == Status.RUNNING


def test_a_session_is_billed_from_when_its_process_started(acme, alice, fake_runtime, catalogue):
    """started_at is the runtime's own start time the host says (a "started" that comes late:
    issue 20's agent-kill fault, where the first start's message died with its agent and the
    start sent again found the container running), within reason; else the event's time."""
    from datetime import timedelta

    from django.utils import timezone

    make_host(cpus=2, memory_gib=8)
    session = start(acme, alice, make_notebook(acme, alice, "Billed"))

    def started(value: object) -> NotebookSession:
        NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(
            status=Status.PULLING, started_at=None, ready_at=None
        )
        assert session.host is not None
        workload_event(session.host, session.workload, "started", {"started_at": value})
        return NotebookSession.objects.for_team(acme).get(pk=session.pk)

    ran_from = session.requested_at + (timezone.now() - session.requested_at) / 2
    assert started(ran_from.timestamp()).started_at == ran_from
    before = timezone.now()
    for wrong in (
        (session.requested_at - timedelta(seconds=5)).timestamp(),  # before it was asked for
        (timezone.now() + timedelta(hours=1)).timestamp(),  # in the future
        "soon",
        None,
    ):
        moment = started(wrong).started_at
        assert moment is not None
        assert moment >= before
