"""A session's start is billed from when its container really started (the agent's "started"
event's ``started_at``, its runtime's clock), not from when the control plane read the event:
an event that waited in the inbox while the control worker was down must not leave the
seconds run meanwhile unbilled (the fault suite's worker kill, tests/faults)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from apps.notebooks.lifecycle.events import on_workload_event
from apps.notebooks.models import NotebookSession, Status
from apps.notebooks.services import notebook_start

pytestmark = pytest.mark.django_db(transaction=True)


def _starting(acme, alice, notebook) -> NotebookSession:
    """A session asked for and placed a minute ago, whose "started" event has not been read
    yet."""
    from apps.machines.models import Placement

    session = notebook_start(team=acme, actor=alice, notebook=notebook)
    asked = timezone.now() - timedelta(minutes=1)
    NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(
        status=Status.SCHEDULED, started_at=None, ready_at=None, requested_at=asked
    )
    assert session.placement_id is not None
    Placement.objects.filter(pk=session.placement_id).update(created_at=asked)
    return NotebookSession.objects.for_team(acme).get(pk=session.pk)


def _started(acme, session, host, started_at) -> datetime | None:
    on_workload_event(host.name, session.workload, "started", {"started_at": started_at})
    return NotebookSession.objects.for_team(acme).get(pk=session.pk).started_at


def test_a_start_read_late_is_billed_from_when_the_container_started(acme, alice, host, notebook):
    session = _starting(acme, alice, notebook)
    began = timezone.now() - timedelta(seconds=12)  # the event waited 12 s in the inbox

    started = _started(acme, session, host, began.timestamp())

    assert started is not None
    assert abs((started - began).total_seconds()) < 0.01


@pytest.mark.parametrize("said", ["soon", None, float("nan"), True])
def test_a_start_without_a_time_is_billed_from_when_it_was_read(acme, alice, host, notebook, said):
    session = _starting(acme, alice, notebook)
    before = timezone.now()

    started = _started(acme, session, host, said)

    assert started is not None
    assert before <= started <= timezone.now()


def test_a_start_time_out_of_reason_is_not_believed(acme, alice, host, notebook):
    """A host is not trusted: a start it dates in the future, or before the session was
    asked for (which would bill the wait in the queue), is taken as now."""
    session = _starting(acme, alice, notebook)
    future = datetime.now(tz=UTC) + timedelta(hours=1)

    before = timezone.now()
    started = _started(acme, session, host, future.timestamp())
    assert started is not None
    assert before <= started <= timezone.now()

    session = _starting(acme, alice, notebook)
    NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(started_at=None)
    long_ago = (session.requested_at - timedelta(days=3)).timestamp()
    before = timezone.now()
    started = _started(acme, session, host, long_ago)
    assert started is not None
    assert before <= started <= timezone.now()


def test_a_ready_without_its_started_event_is_billed_from_the_runtimes_start(
    acme, alice, host, notebook
):
    # The "started" event was lost with a broker restart; "ready" carries the runtime state.
    session = _starting(acme, alice, notebook)
    began = timezone.now() - timedelta(seconds=7)
    data = {"state": {"started_at": began.timestamp()}, "endpoint": session.endpoint}

    on_workload_event(host.name, session.workload, "ready", data)

    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)
    assert session.status == Status.RUNNING
    assert session.started_at is not None
    assert abs((session.started_at - began).total_seconds()) < 0.01
