"""Review 20, the control plane's side of snapshots and storage moves: each finding a strict
xfail (docs/reviews/issue20-control-plane.md). Real PostgreSQL, two fake-runtime hosts, the
save protocol over real HTTP (the test client) as tests/notebooks/test_snapshots*.py do."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from django.db import transaction
from django.utils import timezone

from apps.machines import agent
from apps.machines.services import host_set_draining
from apps.notebooks import upkeep, volumes
from apps.notebooks.lifecycle import ending
from apps.notebooks.models import (
    Notebook,
    NotebookEvent,
    NotebookSession,
    NotebookSnapshot,
    Status,
)
from apps.notebooks.snapshots import snapshot_ended
from tests.factories import NotebookSessionFactory
from tests.notebook_fixtures import make_host
from tests.notebooks.snapshot_helpers import PlayedHost, running, snapshot_tasks
from tests.notebooks.test_storage_moves import Doubles, go_offline, ready_snapshot, start

if TYPE_CHECKING:
    from apps.machines.models import Host

pytestmark = pytest.mark.django_db(transaction=True)

FILES = {"notes.md": b"# day one\n", "model.py": b"import torch\n"}


@pytest.fixture
def hosts(fake_runtime: None, catalogue: dict[str, Any]) -> tuple[Host, Host]:
    """gpu-1 then gpu-2 (as tests/notebooks/test_storage_moves.py's)."""
    return make_host(name="gpu-1"), make_host(name="gpu-2")


@pytest.fixture
def doubles(monkeypatch: pytest.MonkeyPatch) -> Doubles:
    """snapshot_take and snapshot_restore_plan doubled in volumes, agent.start spied
    (as tests/notebooks/test_storage_moves.py's)."""
    d = Doubles()
    monkeypatch.setattr(volumes, "snapshot_take", d.take)
    monkeypatch.setattr(volumes, "snapshot_restore_plan", d.plan)
    original = agent.agent_start.apply_async

    def spy(args: Any = None, **kwargs: Any) -> Any:
        host_name, spec, options = args
        d.starts.append((host_name, spec["name"], options or {}))
        return original(args=args, **kwargs)

    monkeypatch.setattr(agent.agent_start, "apply_async", spy)
    return d


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


def _stop(session: NotebookSession) -> None:
    with transaction.atomic():
        ending.stop_on_host(session)


def test_a_start_dispatched_after_its_snapshot_is_not_dispatched_again_by_another(
    acme, alice, hosts, notebook, doubles: Doubles, monkeypatch
):
    gpu1, _gpu2 = hosts
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_host=gpu1)
    host_set_draining(host=gpu1, draining=True)
    # The host of the start has not answered yet (busy, or downloading its image).
    monkeypatch.setattr(
        agent.agent_start,
        "apply_async",
        lambda args=None, **_kw: doubles.starts.append((args[0], args[1]["name"], args[2])),
    )
    session = start(acme, alice, notebook)
    [move] = doubles.taken
    NotebookSnapshot.objects.unscoped().filter(pk=move.pk).update(
        state=NotebookSnapshot.State.READY, finished_at=timezone.now()
    )
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_saved=True)
    move.refresh_from_db()
    snapshot_ended(move)
    assert [s[0] for s in doubles.starts] == ["gpu-2"]
    assert "restore" in doubles.starts[0][2]

    # A member's "Take a snapshot" (gpu-1 still reads the old volume) ends meanwhile.
    manual = NotebookSnapshot.objects.for_team(acme).create(
        team=acme,
        notebook=notebook,
        host=gpu1,
        reason=NotebookSnapshot.Reason.MANUAL,
        state=NotebookSnapshot.State.READY,
        finished_at=timezone.now(),
    )
    snapshot_ended(manual)

    session.refresh_from_db()
    assert session.start_attempts == 1
    assert len(doubles.starts) == 1  # one start, one restore


def test_a_second_stop_before_the_first_stop_snapshot_ended_is_still_saved(
    acme, alice, media, catalogue, monkeypatch, stops
):
    snapshot_tasks(monkeypatch)
    notebook, first = running(acme, alice)
    _stop(first)
    sent = stops.sent[-1][1]["snapshot"]
    NotebookSession.objects.for_team(acme).filter(pk=first.pk).update(
        ended_at=timezone.now(), status=Status.STOPPED
    )
    # Started again at once on the same host (its files are there), changed, stopped again
    # while gpu's first snapshot is still being read (a big volume).
    second = NotebookSessionFactory.create(
        notebook=notebook,
        host=notebook.volume_host,
        status=Status.RUNNING,
        runtime_state={},
        started_at=timezone.now(),
    )
    _stop(second)
    second_kwargs = stops.sent[-1][1]

    # The first (it cannot hold the second session's changes) gave way to the second's.
    first_snapshot = NotebookSnapshot.objects.for_team(acme).get(session=first)
    assert first_snapshot.state == NotebookSnapshot.State.FAILED
    assert PlayedHost(sent["ticket_url"], sent["ticket"]).manifest(FILES).status_code != 200
    again = second_kwargs["snapshot"]
    PlayedHost(again["ticket_url"], again["ticket"]).save(FILES | {"day2.md": b"more\n"})

    # The second session's files are in a READY snapshot, and the notebook says so.
    saved = NotebookSnapshot.objects.for_team(acme).get(session=second)
    assert (saved.state, saved.reason, saved.file_count) == ("ready", "stop", 3)
    notebook.refresh_from_db()
    assert notebook.volume_saved
    covering = (
        NotebookSnapshot.objects.for_team(acme)
        .filter(notebook=notebook, created_at__gte=second.started_at)
        .exclude(state=NotebookSnapshot.State.FAILED)
    )
    # Either its stop took a snapshot, or one was taken once the first ended, or the
    # notebook says its files are saved.
    assert "snapshot" in second_kwargs or covering.exists() or notebook.volume_saved


def test_a_restart_after_its_host_died_mid_snapshot_restores_at_once(
    acme, alice, hosts, notebook, doubles: Doubles
):
    gpu1, gpu2 = hosts
    first = start(acme, alice, notebook)
    assert first.host == gpu1
    ready = ready_snapshot(notebook, gpu1, reason="schedule")
    # The next scheduled snapshot is being read when gpu-1 dies.
    NotebookSnapshot.objects.for_team(acme).create(
        team=acme, notebook=notebook, session=first, host=gpu1, reason="schedule"
    )
    go_offline(gpu1)
    upkeep.reconcile_sessions()
    first.refresh_from_db()
    assert first.exit_reason == "lost"

    second = start(acme, alice, notebook)

    assert (second.status, second.host) == (Status.RUNNING, gpu2)
    assert doubles.starts[-1][2]["restore"]["snapshot"] == ready.pk


def test_a_warm_start_that_waited_for_its_files_still_claims_its_warm_container(
    acme, alice, hosts, notebook, doubles: Doubles
):
    from apps.machines.models import MachineType, PoolSlot, WarmPool
    from apps.machines.tasks import reconcile
    from apps.notebooks.templates import image_for

    gpu1, gpu2 = hosts
    WarmPool.objects.create(
        host=gpu2,
        machine_type=MachineType.objects.get(slug="cpu-small"),
        image=image_for("scipy", ""),
        size=1,
    )
    reconcile()
    assert PoolSlot.objects.filter(status=PoolSlot.Status.READY, host=gpu2).count() == 1
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_host=gpu1)
    host_set_draining(host=gpu1, draining=True)

    session = start(acme, alice, notebook)
    assert (session.status, session.host) == (Status.SCHEDULED, gpu2)
    assert PoolSlot.objects.get(claimed_by=session.workload).host == gpu2
    [move] = doubles.taken
    NotebookSnapshot.objects.unscoped().filter(pk=move.pk).update(
        state=NotebookSnapshot.State.READY, finished_at=timezone.now()
    )
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_saved=True)
    move.refresh_from_db()
    snapshot_ended(move)

    [(host_name, _, options)] = doubles.starts
    assert host_name == "gpu-2"
    assert "restore" in options
    assert options.get("pool")  # the warm container it was placed on


def test_a_duplicate_of_a_copy_not_started_yet_has_its_files(acme, alice, hosts, doubles: Doubles):
    from apps.notebooks import services

    made = make_notebook_with_snapshot(acme, alice)
    duplicate = services.notebook_duplicate(team=acme, actor=alice, notebook=made, name="Dup")

    start(acme, alice, duplicate)

    assert "restore" in doubles.starts[-1][2]  # the files of the snapshot it came from


def make_notebook_with_snapshot(acme: Any, alice: Any) -> Notebook:
    """A notebook as snapshot_copy leaves it: no volume host, a READY COPY snapshot."""
    from tests.notebook_fixtures import make_notebook

    made = make_notebook(acme, alice, "Copy")
    ready_snapshot(made, None, reason="copy")
    return made


def test_a_start_waiting_on_a_snapshot_of_a_host_that_goes_offline_restores_at_once(
    acme, alice, hosts, notebook, doubles: Doubles
):
    """S3: the reconciler's marking the host offline (machines.hooks.host_offline) fails the
    snapshot it was reading at once, which wakes the start waiting on it: it restores the
    newest READY snapshot, saying from when."""
    from apps.notebooks.snapshots import HOST_WENT_OFFLINE

    gpu1, gpu2 = hosts
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_host=gpu1)
    ready = ready_snapshot(notebook, gpu1, reason="schedule")
    host_set_draining(host=gpu1, draining=True)
    session = start(acme, alice, notebook)
    assert (session.status, session.host) == (Status.SCHEDULED, gpu2)
    [move] = doubles.taken
    assert doubles.starts == []  # it waits for gpu-1's snapshot

    go_offline(gpu1)

    move.refresh_from_db()
    assert (move.state, move.failure) == (NotebookSnapshot.State.FAILED, HOST_WENT_OFFLINE)
    [(host_name, _, options)] = doubles.starts
    assert host_name == "gpu-2"
    assert options["restore"]["snapshot"] == ready.pk
    session.refresh_from_db()
    assert session.status == Status.RUNNING
    notebook.refresh_from_db()
    assert "stayed on gpu-1, which is offline" in " ".join(
        NotebookEvent.objects.unscoped().filter(session=session).values_list("message", flat=True)
    )


def test_a_snapshot_that_ended_before_the_wait_was_recorded_still_dispatches_it(
    acme, alice, hosts, notebook, doubles: Doubles, monkeypatch
):
    """N1: the move snapshot ends (a fast host, an empty volume) before the start records
    that it waits: the start is dispatched at once, not left to upkeep's start timeout."""
    gpu1, _gpu2 = hosts
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_host=gpu1)
    host_set_draining(host=gpu1, draining=True)

    def take_and_end(**kwargs: Any) -> NotebookSnapshot:
        snapshot = doubles.take(**kwargs)
        NotebookSnapshot.objects.unscoped().filter(pk=snapshot.pk).update(
            state=NotebookSnapshot.State.READY, finished_at=timezone.now()
        )
        snapshot_ended(snapshot)  # nothing waits yet
        return snapshot

    monkeypatch.setattr(volumes, "snapshot_take", take_and_end)
    session = start(acme, alice, notebook)

    [move] = doubles.taken
    [(host_name, _, options)] = doubles.starts
    assert (host_name, options["restore"]["snapshot"]) == ("gpu-2", move.pk)
    session.refresh_from_db()
    assert (session.status, session.start_attempts) == (Status.RUNNING, 1)


def test_the_agent_does_not_restore_a_workload_it_is_starting_already(monkeypatch):
    """S1, the agent's side: two starts of one workload in flight at once (its thread pool):
    the second neither restores (emptying the volume under the first) nor starts."""
    name = "nb-1-s1"
    restored: list[Any] = []
    sent: list[Any] = []
    monkeypatch.setattr(agent, "_restore", lambda *a, **_k: restored.append(a))
    monkeypatch.setattr(agent, "_send", lambda *a, **k: sent.append((a, k)))
    monkeypatch.setattr(agent, "host_runtime", object)
    spec = {"name": name, "image": "scipy", "command": []}
    with agent._starting_workload(name) as first:
        assert first
        agent.agent_start("gpu-1", spec, {"restore": {"snapshot": 1, "files": []}})
        assert name in agent._starting  # the first start's mark is kept
    assert (restored, sent) == ([], [])
    assert name not in agent._starting


def test_revoking_a_host_says_which_notebooks_only_copies_it_strands(
    acme, alice, hosts, notebook, client
):
    """N2: Revoke is never refused, but the admin is told which notebooks' only copies of
    their files were on that host."""
    from apps.accounts.models import User
    from apps.machines.models import Host as HostModel

    client.force_login(User.objects.create_superuser("root@example.com", "x" * 12))
    gpu1, gpu2 = hosts
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(
        volume_host=gpu1, volume_saved=False
    )
    answer = client.post(
        "/admin/machines/host/",
        {"action": "revoke", "_selected_action": [gpu1.pk, gpu2.pk]},
        follow=True,
    )
    said = [str(m) for m in answer.context["messages"]]
    assert [m for m in said if "only copy" in m] == [
        (
            f"gpu-1 held the only copy of the files of {acme.slug}/{notebook.name}: until it "
            "is back (its credentials rotated), each starts elsewhere from its newest "
            "snapshot, if any, without the changes made after it."
        )
    ]
    assert HostModel.objects.get(pk=gpu1.pk).drain_requested


def test_a_start_that_waits_again_for_a_move_snapshot_is_dispatched_by_its_end(
    acme, alice, hosts, notebook, doubles: Doubles
):
    """S1's "only the snapshot it waits for", when it waits twice: first for a member's
    snapshot in flight, then (that one not being its files' move) for the move snapshot
    it takes; the move snapshot's end dispatches it, with that restore."""
    gpu1, _gpu2 = hosts
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_host=gpu1)
    host_set_draining(host=gpu1, draining=True)
    manual = NotebookSnapshot.objects.for_team(acme).create(
        team=acme, notebook=notebook, host=gpu1, reason=NotebookSnapshot.Reason.MANUAL
    )
    session = start(acme, alice, notebook)
    assert (doubles.taken, doubles.starts) == ([], [])

    NotebookSnapshot.objects.unscoped().filter(pk=manual.pk).update(
        state=NotebookSnapshot.State.READY, finished_at=timezone.now()
    )
    manual.refresh_from_db()
    snapshot_ended(manual)
    [move] = doubles.taken
    assert doubles.starts == []  # it waits again, for its move snapshot

    NotebookSnapshot.objects.unscoped().filter(pk=move.pk).update(
        state=NotebookSnapshot.State.READY, finished_at=timezone.now()
    )
    move.refresh_from_db()
    snapshot_ended(move)
    [(host_name, _, options)] = doubles.starts
    assert (host_name, options["restore"]["snapshot"]) == ("gpu-2", move.pk)
    session.refresh_from_db()
    assert session.start_attempts == 1
