"""When snapshots are taken without anyone asking: when a notebook stops (agent.stop's
``snapshot=``), on schedule while it runs, and what ends those whose host went silent;
``volume_saved`` once a stop snapshot holds exactly the volume's files."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from apps.models.models import SaveTicket
from apps.models.services.saves import STOPPED_ANSWERING, saves_expire
from apps.notebooks import snapshots
from apps.notebooks.lifecycle import ending
from apps.notebooks.models import Notebook, NotebookSession, NotebookSnapshot, Status
from apps.notebooks.tasks import snapshots_task
from tests.factories import HostFactory, NotebookSessionFactory
from tests.notebooks.snapshot_helpers import PlayedHost, hosted, running, snapshot_tasks

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024
FILES = {"notes.md": b"# day one\n", "model.py": b"import torch\n"}


@pytest.fixture
def queued(monkeypatch, catalogue):
    return snapshot_tasks(monkeypatch)


class _Stops:
    """Stands in for agent_stop: what the control plane asked the host."""

    def __init__(self) -> None:
        self.sent: list[tuple[tuple[Any, ...], dict[str, Any], str]] = []

    def apply_async(self, args, queue, kwargs=None) -> None:
        self.sent.append((tuple(args), kwargs or {}, queue))


@pytest.fixture
def stops(monkeypatch) -> _Stops:
    held = _Stops()
    monkeypatch.setattr(ending, "agent_stop", held)
    return held


def taken(
    notebook: Notebook, reason: str, session: NotebookSession | None = None
) -> NotebookSnapshot:
    made = snapshots.snapshot_take(notebook=notebook, reason=reason, session=session)
    assert made is not None
    return made


def stop(session: NotebookSession, remove_volumes=None) -> None:
    with transaction.atomic():
        ending.stop_on_host(session, remove_volumes)


def newest(notebook: Notebook) -> NotebookSnapshot:
    return NotebookSnapshot.objects.for_team(notebook.team_id).filter(notebook=notebook).first()


# --- the stop snapshot -----------------------------------------------------------------------


def test_a_stop_asks_the_host_to_snapshot_after_it_stopped(acme, alice, media, queued, stops):
    notebook, session = running(acme, alice)

    stop(session)

    ((args, kwargs, queue),) = stops.sent
    assert args == (notebook.volume_host.name, session.workload, None, None)
    assert queue == notebook.volume_host.queue
    sent = kwargs["snapshot"]
    assert set(sent) == {"volume", "ticket_url", "ticket"}
    assert sent["volume"] == notebook.volume
    snapshot = newest(notebook)
    assert (snapshot.reason, snapshot.state) == ("stop", "saving")
    assert snapshot.session_id == session.pk
    assert queued == []  # agent.stop does it: no agent.snapshot of its own

    PlayedHost(sent["ticket_url"], sent["ticket"]).save(FILES)

    snapshot.refresh_from_db()
    notebook.refresh_from_db()
    assert snapshot.state == NotebookSnapshot.State.READY
    assert notebook.volume_saved is True


def test_a_notebook_started_again_before_its_stop_snapshot_ended_is_not_saved(
    acme, alice, media, queued, stops
):
    notebook, session = running(acme, alice)
    stop(session)
    sent = stops.sent[-1][1]["snapshot"]
    NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(
        ended_at=timezone.now(), status=Status.STOPPED
    )
    NotebookSessionFactory.create(
        notebook=notebook, host=notebook.volume_host, started_at=timezone.now()
    )

    PlayedHost(sent["ticket_url"], sent["ticket"]).save(FILES)

    notebook.refresh_from_db()
    assert newest(notebook).state == NotebookSnapshot.State.READY
    assert notebook.volume_saved is False


def test_no_stop_snapshot_when_the_volume_goes_or_is_elsewhere(acme, alice, media, queued, stops):
    notebook, session = running(acme, alice)
    stop(session, [notebook.volume])
    _elsewhere, on_b = running(acme, alice, "Elsewhere")
    NotebookSession.objects.for_team(acme).filter(pk=on_b.pk).update(host=HostFactory.create())
    on_b.refresh_from_db()
    stop(on_b)

    assert [kwargs for _, kwargs, _ in stops.sent] == [{}, {}]
    assert not NotebookSnapshot.objects.for_team(acme).exists()


def test_a_scheduled_snapshot_in_flight_gives_way_to_the_stop_one(
    acme, alice, media, queued, stops
):
    notebook, session = running(acme, alice)
    scheduled = taken(notebook, "schedule", session)
    old_host = PlayedHost.of(queued[-1])

    stop(session)

    scheduled.refresh_from_db()
    assert scheduled.state == NotebookSnapshot.State.FAILED
    assert scheduled.failure == snapshots.SUPERSEDED
    assert old_host.post("manifest", {"files": []}).status_code == 403
    assert newest(notebook).reason == NotebookSnapshot.Reason.STOP
    # A stop sent again (the reconciler) takes no second snapshot.
    stop(session)
    assert stops.sent[-1][1] == {}
    assert NotebookSnapshot.objects.for_team(acme).filter(state="saving").count() == 1


# --- scheduled snapshots ---------------------------------------------------------------------


def test_running_notebooks_are_snapshotted_on_schedule(acme, alice, media, queued, settings):
    settings.LATTICE_SNAPSHOT_EVERY = 900
    long_ago = timezone.now() - timedelta(seconds=1000)
    notebook, session = running(acme, alice, started_at=long_ago)
    running(acme, alice, "Just started", started_at=timezone.now())
    hosted(acme, alice, "Stopped")

    assert snapshots.snapshots_due() == 1

    snapshot = newest(notebook)
    assert (snapshot.reason, snapshot.session_id) == ("schedule", session.pk)
    assert len(queued) == 1
    # The newest snapshot, whatever its state, is recent: none again.
    assert snapshots.snapshots_due() == 0
    PlayedHost.of(queued[-1]).post("fail", {"code": "changed"})
    assert newest(notebook).state == NotebookSnapshot.State.FAILED
    assert snapshots.snapshots_due() == 0
    # Once it is older than LATTICE_SNAPSHOT_EVERY, the next one.
    NotebookSnapshot.objects.for_team(acme).update(created_at=long_ago)
    assert snapshots.snapshots_due() == 1
    assert newest(notebook).state == NotebookSnapshot.State.SAVING


def test_the_beat_task_runs_both_passes(acme, alice, media, queued, settings):
    settings.LATTICE_SNAPSHOT_EVERY = 60
    running(acme, alice, started_at=timezone.now() - timedelta(minutes=5))

    assert snapshots_task.apply().result == {"failed": 0, "begun": 1}


# --- a snapshot whose host went silent -------------------------------------------------------


def test_a_snapshot_whose_ticket_expired_is_failed_by_upkeep(acme, alice, media, queued):
    notebook = hosted(acme, alice)
    snapshot = taken(notebook, "manual")
    host = PlayedHost.of(queued[-1])
    host.manifest(FILES)
    SaveTicket.objects.for_team(acme).filter(pk=snapshot.save_ticket_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert snapshots.snapshots_dead_fail() == 1

    snapshot.refresh_from_db()
    assert (snapshot.state, snapshot.failure) == ("failed", STOPPED_ANSWERING)
    assert host.post("complete").status_code == 403
    assert snapshots.snapshots_dead_fail() == 0


def test_the_models_upkeep_ending_an_expired_ticket_fails_its_snapshot(acme, alice, media, queued):
    snapshot = taken(hosted(acme, alice), "manual")
    SaveTicket.objects.for_team(acme).filter(pk=snapshot.save_ticket_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    saves_expire()

    snapshot.refresh_from_db()
    assert (snapshot.state, snapshot.failure) == ("failed", STOPPED_ANSWERING)


def test_a_snapshot_whose_ticket_is_gone_is_failed(acme, alice, media, queued):
    snapshot = taken(hosted(acme, alice), "manual")
    SaveTicket.objects.for_team(acme).filter(pk=snapshot.save_ticket_id).delete()

    assert snapshots.snapshots_dead_fail() == 1

    snapshot.refresh_from_db()
    assert snapshot.state == NotebookSnapshot.State.FAILED
