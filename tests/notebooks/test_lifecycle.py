"""Notebook lifecycle through the services, the tasks and the agent, on the fake runtime.

Celery runs eagerly here: a start goes queue -> place -> agent start ->
readiness (the fake answers /api/status like Jupyter) -> running in one call.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.stream import stream_after
from apps.machines.agent import agent_report
from apps.machines.models import Placement
from apps.machines.tasks import reconcile
from apps.notebooks import services, upkeep
from apps.notebooks.models import Notebook, NotebookEvent, NotebookSession, Status
from apps.runtimes.fake import FakeRuntime
from tests.notebook_fixtures import make_host, make_notebook

pytestmark = pytest.mark.django_db(transaction=True)


def placement_of(session: NotebookSession) -> Placement:
    assert session.placement_id is not None
    return Placement.objects.get(pk=session.placement_id)


def start(team, actor, nb) -> NotebookSession:
    session = services.notebook_start(team=team, actor=actor, notebook=nb)
    return NotebookSession.objects.for_team(team).get(pk=session.pk)


def test_a_started_notebook_runs_and_says_how_it_got_there(acme, alice, host, notebook):
    session = start(acme, alice, notebook)

    notebook.refresh_from_db()
    assert (notebook.status, notebook.desired_state) == (Status.RUNNING, "running")
    assert session.status == Status.RUNNING
    assert session.host == host
    assert session.started_at is not None
    assert session.ready_at is not None
    assert session.ready_at >= session.started_at
    assert session.endpoint.startswith("http://127.0.0.1:")
    phases = list(
        NotebookEvent.objects.for_team(acme)
        .filter(session=session)
        .order_by("pk")
        .values_list("phase", flat=True),
    )
    assert phases[0] == "queued"
    assert "placed" in phases
    assert phases[-1] == "ready"
    # The workload got the session's token, its volumes and its labels.
    entry = FakeRuntime._running[session.workload]
    assert entry["labels"]["lattice.notebook"] == str(notebook.pk)
    assert entry["labels"]["lattice.stream"] == notebook.stream


def test_starting_twice_starts_one_container(acme, alice, bob, host, notebook):
    first = start(acme, alice, notebook)
    second = start(acme, bob, notebook)

    assert first.pk == second.pk
    assert NotebookSession.objects.for_team(acme).count() == 1
    assert len([n for n in FakeRuntime._running if n.startswith(f"nb-{notebook.pk}-")]) == 1


def test_stop_ends_the_session_and_frees_the_machine(acme, alice, host, notebook):
    session = start(acme, alice, notebook)

    services.notebook_stop(team=acme, actor=alice, notebook=notebook)

    session.refresh_from_db()
    notebook.refresh_from_db()
    assert notebook.status == Status.STOPPED
    assert session.exit_reason == "stopped"
    assert session.ended_at is not None
    assert not placement_of(session).active
    assert FakeRuntime._running[session.workload]["exit"] == 0
    # Stopping a stopped notebook is fine and does nothing.
    assert services.notebook_stop(team=acme, actor=alice, notebook=notebook) is None


def test_a_restart_ends_one_session_and_opens_the_next_on_the_same_storage(
    acme, alice, host, notebook
):
    first = start(acme, alice, notebook)

    services.notebook_restart(team=acme, actor=alice, notebook=notebook)

    first.refresh_from_db()
    sessions = list(NotebookSession.objects.for_team(acme).order_by("pk"))
    assert len(sessions) == 2
    assert first.exit_reason == "restarted"
    assert sessions[1].status == Status.RUNNING
    volumes = [FakeRuntime._running[s.workload]["labels"]["lattice.notebook"] for s in sessions]
    assert volumes[0] == volumes[1]


def test_the_machine_changes_only_while_stopped_and_the_storage_stays(
    acme, alice, host, notebook, catalogue
):
    volume = notebook.volume_id
    start(acme, alice, notebook)

    with pytest.raises(services.NotebookConflictError, match="Stop the notebook"):
        services.notebook_update(
            team=acme, actor=alice, notebook=notebook, machine_type=catalogue["cpu-large"]
        )
    services.notebook_stop(team=acme, actor=alice, notebook=notebook)
    services.notebook_update(
        team=acme, actor=alice, notebook=notebook, machine_type=catalogue["cpu-large"]
    )

    notebook.refresh_from_db()
    assert notebook.machine_type == catalogue["cpu-large"]
    assert notebook.volume_id == volume


def test_delete_needs_the_name_typed_then_removes_the_storage(acme, alice, host, notebook):
    start(acme, alice, notebook)

    with pytest.raises(services.NotebookError, match="Type the notebook's name"):
        services.notebook_delete(team=acme, actor=alice, notebook=notebook, confirmation="nope")
    services.notebook_delete(team=acme, actor=alice, notebook=notebook, confirmation="Churn model")

    notebook.refresh_from_db()
    assert notebook.deleted_at is not None
    assert notebook.status == Status.STOPPED
    assert notebook.volume in FakeRuntime.removed_volumes
    # The name is free again; the session stays for billing.
    services.notebook_create(
        team=acme,
        actor=alice,
        name="Churn model",
        template="scipy",
        machine_type=notebook.machine_type,
    )
    assert NotebookSession.objects.for_team(acme).filter(notebook=notebook).count() == 1


def test_a_viewer_cannot_start_a_notebook(acme, host, notebook):
    from apps.teams.models import Role
    from tests.factories import UserFactory, add_member

    viewer = UserFactory.create()
    add_member(acme, viewer, Role.VIEWER)

    with pytest.raises(services.NotebookPermissionError):
        services.notebook_start(team=acme, actor=viewer, notebook=notebook)


def test_a_crashing_server_fails_in_plain_words_and_frees_the_machine(
    acme, alice, settings, notebook, fake_runtime, catalogue
):
    settings.LATTICE_RUNTIME = "fake:crashes"
    make_host()

    session = start(acme, alice, notebook)

    notebook.refresh_from_db()
    assert session.status == Status.FAILED
    assert session.exit_reason == "failed"
    assert notebook.status == Status.FAILED
    assert notebook.desired_state == "stopped"
    assert "exited during start (status 1)" in notebook.status_message
    assert "The log above says why" in notebook.status_message
    assert not placement_of(session).active


def test_a_start_that_never_answers_fails_after_the_timeout(
    acme, alice, settings, notebook, fake_runtime, catalogue
):
    settings.LATTICE_RUNTIME = "fake:never-ready"
    settings.LATTICE_NOTEBOOK_START_TIMEOUT = 1
    make_host()

    session = start(acme, alice, notebook)

    notebook.refresh_from_db()
    assert session.status == Status.FAILED
    assert "did not answer within 1 s" in notebook.status_message


def test_the_second_notebook_waits_in_line_and_starts_when_room_frees(
    acme, alice, fake_runtime, catalogue
):
    make_host(cpus=2, memory_gib=8)  # room for one cpu-small
    first = make_notebook(acme, alice, "One")
    second = make_notebook(acme, alice, "Two")
    start(acme, alice, first)

    waiting = start(acme, alice, second)

    second.refresh_from_db()
    assert waiting.status == Status.QUEUED
    assert "you are next" in second.status_message
    services.notebook_stop(team=acme, actor=alice, notebook=first)
    waiting.refresh_from_db()
    assert waiting.status == Status.RUNNING


def test_a_queued_notebook_is_told_once_per_change_not_at_each_pass(
    acme, alice, fake_runtime, catalogue
):
    """The reconciler asks the line again at each pass: the notebook's events and its live
    stream say its place once, and again only when the words change."""
    make_host(cpus=2, memory_gib=8)
    first = make_notebook(acme, alice, "One")
    second = make_notebook(acme, alice, "Two")
    third = make_notebook(acme, alice, "Three")
    start(acme, alice, first)
    waiting = start(acme, alice, second)
    events = NotebookEvent.objects.for_team(acme).filter(session=waiting).order_by("pk")
    before = list(events.values_list("message", flat=True))
    assert before[-1].endswith("you are next.")

    for _ in range(3):
        upkeep.reconcile_sessions()
    assert list(events.values_list("message", flat=True)) == before

    behind = start(acme, alice, third)
    third.refresh_from_db()
    assert third.status_message.endswith("1 ahead of you.")
    services.notebook_stop(team=acme, actor=alice, notebook=first)
    upkeep.reconcile_sessions()
    behind.refresh_from_db()
    assert behind.status == Status.QUEUED
    third.refresh_from_db()
    assert third.status_message.endswith("you are next.")
    said = NotebookEvent.objects.for_team(acme).filter(session=behind).order_by("pk")
    places = [
        m for m in said.values_list("message", flat=True) if m.startswith("Waiting for a free")
    ]
    assert [m.split(": ")[-1] for m in places] == ["1 ahead of you.", "you are next."]


def test_stopping_a_queued_notebook_cancels_its_place_in_line(acme, alice, fake_runtime, catalogue):
    make_host(cpus=2, memory_gib=8)
    first = make_notebook(acme, alice, "One")
    second = make_notebook(acme, alice, "Two")
    start(acme, alice, first)
    waiting = start(acme, alice, second)

    services.notebook_stop(team=acme, actor=alice, notebook=second)

    waiting.refresh_from_db()
    assert (waiting.status, waiting.exit_reason) == (Status.STOPPED, "cancelled")
    services.notebook_stop(team=acme, actor=alice, notebook=first)
    assert NotebookSession.objects.for_team(acme).filter(ended_at__isnull=True).count() == 0


def test_status_changes_reach_the_live_stream_in_order(acme, alice, host, notebook):
    start(acme, alice, notebook)

    messages = stream_after(notebook.stream, 0)

    statuses = [m["status"] for m in messages if m["type"] == "status"]
    assert statuses[0] == "queued"
    assert statuses[-1] == "running"
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(1, len(seqs) + 1))


def test_an_idle_notebook_is_warned_then_stopped_and_extend_resets_it(acme, alice, host, notebook):
    services.notebook_update(team=acme, actor=alice, notebook=notebook, idle_timeout_minutes=60)
    session = start(acme, alice, notebook)
    now = timezone.now()
    # The fake Jupyter's last activity is when it started; the session's is long ago.
    NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(
        activity_at=now - timedelta(minutes=55), ready_at=now - timedelta(minutes=55)
    )
    session.refresh_from_db()

    upkeep._judge_idle(session, None, counts := {"warned": 0, "stopped": 0})
    session.refresh_from_db()
    assert counts["warned"] == 1
    assert session.idle_warned_at is not None

    services.notebook_extend(team=acme, actor=alice, notebook=notebook)
    session.refresh_from_db()
    assert session.idle_warned_at is None

    NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(
        activity_at=now - timedelta(minutes=61), ready_at=now - timedelta(minutes=61)
    )
    session.refresh_from_db()
    upkeep._judge_idle(session, None, counts)
    session.refresh_from_db()
    assert counts["stopped"] == 1
    assert session.exit_reason == "idle"
    notebook.refresh_from_db()
    assert "idle" in notebook.status_message


def test_never_means_never_for_idle_shutdown(acme, alice, host, notebook):
    services.notebook_update(team=acme, actor=alice, notebook=notebook, idle_timeout_minutes=0)
    session = start(acme, alice, notebook)
    NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(
        activity_at=timezone.now() - timedelta(days=3)
    )
    session.refresh_from_db()

    upkeep._judge_idle(session, None, counts := {"warned": 0, "stopped": 0})

    assert counts == {"warned": 0, "stopped": 0}


def test_a_lost_start_message_is_sent_again_by_the_reconciler(
    acme, alice, host, notebook, settings, django_capture_on_commit_callbacks
):
    # The worker died with the agent's start message: nothing ran on the host.
    settings.CELERY_TASK_ALWAYS_EAGER = False
    from config.celery import app as celery_app

    celery_app.conf.task_always_eager = False
    try:
        session = start(acme, alice, notebook)
        from apps.core.tenancy import team_scope
        from apps.notebooks import lifecycle

        with team_scope(acme):  # what the control worker does: the agent never hears of it
            lifecycle.session_place(NotebookSession.objects.get(pk=session.pk))
    finally:
        celery_app.conf.task_always_eager = True
    session.refresh_from_db()
    assert session.status == Status.SCHEDULED
    assert session.workload not in FakeRuntime._running

    NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(
        progressed_at=timezone.now() - timedelta(minutes=5)
    )
    counts = upkeep.reconcile_sessions()

    session.refresh_from_db()
    assert counts["redispatched"] == 1
    assert session.status == Status.RUNNING


def test_a_workload_that_vanished_is_lost_and_billed_to_when_it_was_last_seen(
    acme, alice, host, notebook
):
    session = start(acme, alice, notebook)
    Placement.objects.filter(pk=placement_of(session).pk).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    agent_report(host.name)
    reconcile()
    seen = placement_of(session).last_seen_at
    assert seen is not None

    FakeRuntime._running.pop(session.workload)  # killed behind Lattice's back
    for _ in range(2):
        agent_report(host.name)
        reconcile()
    upkeep.reconcile_sessions()

    session.refresh_from_db()
    notebook.refresh_from_db()
    assert (session.status, session.exit_reason) == (Status.LOST, "lost")
    assert session.ended_at == seen
    assert notebook.status == Status.LOST
    assert "Start it again" in notebook.status_message


def test_notebooks_of_another_team_are_out_of_reach(acme, globex, charlie, notebook):
    assert not Notebook.objects.for_team(globex).filter(pk=notebook.pk).exists()
    with pytest.raises(services.NotebookError):
        services.notebook_start(team=globex, actor=charlie, notebook=notebook)


def test_an_image_download_is_shown_with_its_percent(
    acme, alice, settings, notebook, fake_runtime, catalogue
):
    settings.LATTICE_RUNTIME = "fake:pulls"
    make_host()

    session = start(acme, alice, notebook)

    pulling = list(
        NotebookEvent.objects.for_team(acme)
        .filter(session=session, phase="pulling")
        .values_list("percent", flat=True)
    )
    assert session.status == Status.RUNNING
    assert pulling, "no pulling phase was recorded"
    assert pulling == sorted(pulling)
    assert all(0 <= p < 100 for p in pulling)
