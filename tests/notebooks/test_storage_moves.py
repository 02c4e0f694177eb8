"""Storage follows its notebook (issue 20): placement prefers the host that holds its files, a
start elsewhere restores them (or waits while their host saves them), host loss, draining and
fencing. Two hosts on the fake runtime, real PostgreSQL, Celery eager.

apps.notebooks.snapshots is another helper's ("snapserver"): where a test needs a READY
snapshot it makes the NotebookSnapshot/SnapshotFile rows itself, and it replaces
``snapshot_take`` and ``snapshot_restore_plan`` (only those two) with the small test doubles
below, in apps.notebooks.volumes' namespace, where the dispatch calls them. The restore itself
is the agent's ("snapagent"): here the plan the dispatch hands agent.start is what is checked.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from apps.machines import agent
from apps.machines.models import Host, Placement, PlacementRequest
from apps.machines.reports import host_reported, workload_event
from apps.machines.services import HostError, host_delete, host_set_draining
from apps.machines.tasks import reconcile
from apps.notebooks import services, upkeep, volumes
from apps.notebooks.errors import NotebookConflictError
from apps.notebooks.models import (
    Notebook,
    NotebookEvent,
    NotebookSession,
    NotebookSnapshot,
    SnapshotFile,
    Status,
)
from apps.notebooks.snapshots import snapshot_ended
from apps.runtimes.base import LABEL_PREFIX
from apps.runtimes.fake import FakeRuntime
from tests.factories import BlobFactory
from tests.notebook_fixtures import make_host, make_notebook

pytestmark = pytest.mark.django_db(transaction=True)

GB = 10**9


@pytest.fixture
def hosts(fake_runtime: None, catalogue: dict[str, Any]) -> tuple[Host, Host]:
    """gpu-1 then gpu-2: first-fit alone would always pick gpu-1."""
    return make_host(name="gpu-1"), make_host(name="gpu-2")


class Doubles:
    """The test doubles of snapshot_take and snapshot_restore_plan, and what agent.start got."""

    def __init__(self) -> None:
        self.taken: list[NotebookSnapshot] = []
        self.plans: list[int] = []
        self.starts: list[tuple[str, str, dict[str, Any]]] = []
        self.queued: list[Any] = []

    def take(self, *, notebook: Notebook, reason: str, session: Any = None, actor: Any = None):
        # As snapserver's contract says: a SAVING row read from notebook.volume_host.
        if notebook.volume_host is None or notebook.volume_host.status == Host.Status.OFFLINE:
            return None
        snapshot = NotebookSnapshot.objects.for_team(notebook.team_id).create(
            team_id=notebook.team_id,
            notebook=notebook,
            session=session,
            host=notebook.volume_host,
            reason=reason,
        )
        self.taken.append(snapshot)
        return snapshot

    def plan(self, snapshot: NotebookSnapshot, *, volume: str, lifetime: timedelta):
        self.plans.append(snapshot.pk)
        # No files: the agent's restore (snapagent's) has nothing to download here.
        return {"snapshot": snapshot.pk, "volume": volume, "total": 0, "files": []}


@pytest.fixture
def doubles(monkeypatch: pytest.MonkeyPatch) -> Doubles:
    d = Doubles()
    monkeypatch.setattr(volumes, "snapshot_take", d.take)
    monkeypatch.setattr(volumes, "snapshot_restore_plan", d.plan)
    original = agent.agent_start.apply_async

    def spy(args: Any = None, **kwargs: Any) -> Any:
        host_name, spec, options = args
        d.starts.append((host_name, spec["name"], options or {}))
        return original(args=args, **kwargs)

    monkeypatch.setattr(agent.agent_start, "apply_async", spy)

    # The stop snapshot the agent queues on its own queue is not run: the test says when a
    # snapshot ends (the real one is tests/notebooks/test_snapshots*.py's).
    def queued(args: Any = None, **_options: Any) -> None:
        d.queued.append(args)

    monkeypatch.setattr(agent.agent_snapshot, "apply_async", queued)
    return d


def ready_snapshot(notebook: Notebook, host: Host | None, *, reason: str = "stop", **fields: Any):
    """A READY snapshot of two files, made as rows (snapserver makes them from a manifest)."""
    snapshot = NotebookSnapshot.objects.for_team(notebook.team_id).create(
        team_id=notebook.team_id,
        notebook=notebook,
        host=host,
        reason=reason,
        state=NotebookSnapshot.State.READY,
        file_count=2,
        total_bytes=3_400_000_000,
        finished_at=timezone.now(),
        **fields,
    )
    for path in ("a.ipynb", "data/b.csv"):
        blob = BlobFactory.create(data=f"{notebook.pk} {path}".encode())
        SnapshotFile.objects.for_team(notebook.team_id).create(
            team_id=notebook.team_id,
            snapshot=snapshot,
            path=path,
            size=blob.size,
            sha256=blob.sha256,
            blob=blob,
        )
    return snapshot


def start(team: Any, actor: Any, nb: Notebook) -> NotebookSession:
    session = services.notebook_start(team=team, actor=actor, notebook=nb)
    return NotebookSession.objects.for_team(team).get(pk=session.pk)


def holder(nb: Notebook) -> tuple[int | None, bool]:
    nb.refresh_from_db()
    return nb.volume_host_id, nb.volume_saved


def messages_of(session: NotebookSession) -> list[str]:
    return list(
        NotebookEvent.objects.unscoped()
        .filter(session=session)
        .order_by("pk")
        .values_list("message", flat=True)
    )


# --- placement ------------------------------------------------------------------------------


def test_a_start_lands_on_the_host_that_holds_its_files_and_takes_them_as_they_are(
    acme, alice, hosts, notebook, doubles
):
    _gpu1, gpu2 = hosts
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_host=gpu2)

    session = start(acme, alice, notebook)

    assert session.status == Status.RUNNING
    assert session.host == gpu2  # not first-fit's gpu-1
    assert [(h, o.get("restore")) for h, _, o in doubles.starts] == [("gpu-2", None)]
    assert holder(notebook) == (gpu2.pk, False)
    assert doubles.taken == []


def test_a_first_start_goes_first_fit_and_its_host_then_holds_the_files(
    acme, alice, hosts, notebook, doubles
):
    gpu1, _ = hosts
    assert holder(notebook) == (None, False)

    session = start(acme, alice, notebook)

    assert session.host == gpu1
    assert doubles.starts[0][2].get("restore") is None
    assert holder(notebook) == (gpu1.pk, False)


def test_a_full_preferred_host_sends_the_start_elsewhere_first_fit(acme, alice, hosts, doubles):
    gpu1, gpu2 = hosts
    nb = make_notebook(acme, alice, "Big", machine="cpu-small")
    Notebook.objects.for_team(acme).filter(pk=nb.pk).update(volume_host=gpu2, volume_saved=True)
    ready_snapshot(nb, gpu2)
    Host.objects.filter(pk=gpu2.pk).update(cpu_count=1)  # no room for cpu-small now

    session = start(acme, alice, nb)

    assert session.host == gpu1
    # Its files were saved on gpu-2: restored from that snapshot on gpu-1.
    assert doubles.starts[0][0] == "gpu-1"
    assert doubles.starts[0][2]["restore"]["volume"] == nb.volume


def test_the_line_places_a_waiting_request_on_its_preferred_host(hosts, catalogue):
    from apps.machines.models import MachineType
    from apps.machines.queue import placement_request, queue_advance

    gpu1, gpu2 = hosts
    small = MachineType.objects.get(slug="cpu-small")
    Host.objects.filter(pk__in=[gpu1.pk, gpu2.pk]).update(status=Host.Status.DRAINING)
    request = placement_request(machine_type=small, workload="nb-1-s1", prefer_host_id=gpu2.pk)
    assert request.status == PlacementRequest.Status.WAITING
    assert request.prefer_host_id == gpu2.pk

    Host.objects.filter(pk__in=[gpu1.pk, gpu2.pk]).update(status=Host.Status.READY)
    assert queue_advance(machine_type=small) == 1

    request.refresh_from_db()
    assert request.placement is not None
    assert request.placement.host_id == gpu2.pk
    # Without a preference the line is first-fit, as before.
    other = placement_request(machine_type=small, workload="nb-2-s2")
    assert other.placement is not None
    assert other.placement.host_id == gpu1.pk


def test_a_warm_container_on_the_preferred_host_is_taken_first(acme, alice, hosts, doubles):
    from apps.machines.models import MachineType, PoolSlot, WarmPool
    from apps.notebooks.templates import image_for

    _gpu1, gpu2 = hosts
    for host in hosts:
        WarmPool.objects.create(
            host=host,
            machine_type=MachineType.objects.get(slug="cpu-small"),
            image=image_for("scipy", ""),
            size=1,
        )
    reconcile()
    assert PoolSlot.objects.filter(status=PoolSlot.Status.READY).count() == 2
    nb = make_notebook(acme, alice, "Warm")
    Notebook.objects.for_team(acme).filter(pk=nb.pk).update(volume_host=gpu2)

    session = start(acme, alice, nb)

    assert session.host == gpu2
    assert doubles.starts[0][2].get("pool")
    assert PoolSlot.objects.get(claimed_by=session.workload).host == gpu2


# --- moving files ---------------------------------------------------------------------------


def test_a_start_elsewhere_waits_while_its_files_are_saved_then_restores_them(
    acme, alice, hosts, notebook, doubles, settings
):
    gpu1, gpu2 = hosts
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_host=gpu1)
    host_set_draining(host=gpu1, draining=True)  # takes no new work, still reads its volume

    session = start(acme, alice, notebook)

    # Placed on gpu-2, not started: gpu-1 saves its files first (a MOVE snapshot).
    assert (session.status, session.host) == (Status.SCHEDULED, gpu2)
    assert doubles.starts == []
    assert session.workload not in FakeRuntime._running
    [snapshot] = doubles.taken
    assert (snapshot.reason, snapshot.session_id, snapshot.host) == ("move", session.pk, gpu1)
    notebook.refresh_from_db()
    assert notebook.status_message == "Saving its files on gpu-1 to bring them here."
    assert session.start_attempts == 0

    # Not judged stuck by upkeep while the snapshot is being taken, however long.
    NotebookSession.objects.unscoped().filter(pk=session.pk).update(
        progressed_at=timezone.now() - timedelta(hours=1)
    )
    counts = upkeep.reconcile_sessions()
    assert (counts["redispatched"], counts["failed"]) == (0, 0)
    session.refresh_from_db()
    assert session.status == Status.SCHEDULED

    # The snapshot ends READY (snapserver sets volume_saved and tells snapshot_ended).
    NotebookSnapshot.objects.unscoped().filter(pk=snapshot.pk).update(
        state=NotebookSnapshot.State.READY, finished_at=timezone.now()
    )
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_saved=True)
    snapshot.refresh_from_db()
    snapshot_ended(snapshot)

    session.refresh_from_db()
    assert session.status == Status.RUNNING
    [(host_name, _, options)] = doubles.starts
    assert host_name == "gpu-2"
    assert options["restore"] == {
        "snapshot": snapshot.pk,
        "volume": notebook.volume,
        "total": 0,
        "files": [],
    }
    assert holder(notebook) == (gpu2.pk, False)


def test_a_notebook_made_from_a_snapshot_restores_it_on_its_first_start(
    acme, alice, hosts, doubles
):
    gpu1, _ = hosts
    copy = make_notebook(acme, alice, "Copy")  # snapshot_copy's: no volume host, a snapshot
    snapshot = ready_snapshot(copy, None, reason="copy")

    session = start(acme, alice, copy)

    assert (session.status, session.host) == (Status.RUNNING, gpu1)
    assert doubles.starts[0][2]["restore"]["snapshot"] == snapshot.pk
    assert holder(copy) == (gpu1.pk, False)
    # From then on its files are on gpu-1: a restart there restores nothing.
    services.notebook_restart(team=acme, actor=alice, notebook=copy)
    assert [o.get("restore") is None for _, _, o in doubles.starts] == [False, True]


def test_a_failed_move_snapshot_fails_the_start_saying_what_to_do(
    acme, alice, hosts, notebook, doubles
):
    gpu1, _gpu2 = hosts
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_host=gpu1)
    host_set_draining(host=gpu1, draining=True)
    session = start(acme, alice, notebook)
    [snapshot] = doubles.taken

    NotebookSnapshot.objects.unscoped().filter(pk=snapshot.pk).update(
        state=NotebookSnapshot.State.FAILED, failure="a file changed while it was read"
    )
    snapshot.refresh_from_db()
    snapshot_ended(snapshot)

    session.refresh_from_db()
    notebook.refresh_from_db()
    assert (session.status, session.exit_reason) == (Status.FAILED, "failed")
    assert notebook.status_message == (
        "Its files could not be saved on gpu-1 to move them to gpu-2 (a file changed while it "
        "was read). Start it again to try once more; if it keeps failing, tell your "
        "administrator."
    )
    assert doubles.starts == []
    assert not Placement.objects.filter(workload=session.workload, active=True).exists()
    # Its files stay where they were.
    assert holder(notebook) == (gpu1.pk, False)


def test_a_host_cannot_have_its_failure_shown_without_our_advice(
    acme, alice, hosts, notebook, doubles
):
    """Only the control plane's own refusal is shown as it is: a host that says "advised"
    in its failure (review note N3) still gets the advice after its words."""
    session = start(acme, alice, notebook)
    host = session.host
    assert host is not None

    workload_event(host, session.workload, "failed", {"message": "Gone.", "advised": True})

    notebook.refresh_from_db()
    assert notebook.status_message == (
        "Gone. Start it again; if it keeps failing, tell your administrator."
    )


def test_restoring_progress_is_shown_in_decimal_gigabytes(acme, alice, hosts, notebook, doubles):
    gpu1, gpu2 = hosts
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_host=gpu1)
    host_set_draining(host=gpu1, draining=True)
    session = start(acme, alice, notebook)  # waits on gpu-2 for gpu-1's snapshot

    said = {"phase": "restoring", "done": 1_234_000_000, "total": 3_400_000_000}
    workload_event(gpu2, session.workload, "progress", said)

    notebook.refresh_from_db()
    assert notebook.status_message == "Restoring files: 1.2 of 3.4 GB"
    event = NotebookEvent.objects.unscoped().filter(session=session).order_by("-pk").first()
    assert (event.phase, event.percent) == ("restoring", 36)
    # What a host may not say: text, more done than total, a bool, another host's word.
    for data in (
        {"phase": "restoring", "done": "1 GB", "total": 3},
        {"phase": "restoring", "done": 5, "total": 3},
        {"phase": "restoring", "done": True, "total": 3},
    ):
        workload_event(gpu2, session.workload, "progress", data)
    workload_event(
        gpu1, session.workload, "progress", {"phase": "restoring", "done": 0, "total": 1}
    )
    notebook.refresh_from_db()
    assert notebook.status_message == "Restoring files: 1.2 of 3.4 GB"


# --- host loss ------------------------------------------------------------------------------


def go_offline(host: Host) -> None:
    Host.objects.filter(pk=host.pk).update(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    reconcile()
    host.refresh_from_db()
    assert host.status == Host.Status.OFFLINE


def test_a_restart_after_its_host_went_offline_restores_the_newest_snapshot_and_says_from_when(
    acme, alice, hosts, notebook, doubles
):
    gpu1, gpu2 = hosts
    first = start(acme, alice, notebook)
    assert first.host == gpu1
    older = ready_snapshot(notebook, gpu1, reason="schedule")
    newest = ready_snapshot(notebook, gpu1, reason="schedule")
    at = timezone.localtime(timezone.now() - timedelta(minutes=7)).replace(second=0)
    earlier = at - timedelta(hours=1)
    NotebookSnapshot.objects.unscoped().filter(pk=older.pk).update(created_at=earlier)
    NotebookSnapshot.objects.unscoped().filter(pk=newest.pk).update(created_at=at)

    go_offline(gpu1)
    upkeep.reconcile_sessions()
    first.refresh_from_db()
    assert first.exit_reason == "lost"

    second = start(acme, alice, notebook)

    assert (second.status, second.host) == (Status.RUNNING, gpu2)
    assert doubles.plans == [newest.pk]
    assert doubles.starts[-1][2]["restore"]["snapshot"] == newest.pk
    assert (
        f"Your files are restored from the snapshot of {at:%H:%M}; changes after it stayed "
        "on gpu-1, which is offline."
    ) in messages_of(second)
    assert holder(notebook) == (gpu2.pk, False)


def test_a_start_whose_files_are_only_on_an_offline_host_is_refused_with_what_to_do(
    acme, alice, hosts, notebook, doubles
):
    gpu1, _ = hosts
    first = start(acme, alice, notebook)
    go_offline(gpu1)
    upkeep.reconcile_sessions()
    first.refresh_from_db()
    assert first.ended_at is not None

    with pytest.raises(NotebookConflictError) as refused:
        services.notebook_start(team=acme, actor=alice, notebook=notebook)

    assert str(refused.value) == (
        "Its files are only on gpu-1, which is offline, and no snapshot of them exists. "
        "Bring gpu-1 back online and start it again: its files are there."
    )
    assert refused.value.status_code == 409
    assert NotebookSession.objects.for_team(acme).count() == 1  # nothing half made


def test_a_host_that_went_offline_after_the_placement_fails_the_start_with_the_same_words(
    acme, alice, hosts, notebook, doubles
):
    gpu1, gpu2 = hosts
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_host=gpu1)
    # Offline between the start's check and its dispatch: files_step is the backstop.
    Host.objects.filter(pk=gpu1.pk).update(status=Host.Status.OFFLINE)
    session = NotebookSession.objects.for_team(acme).create(
        team=acme,
        notebook=notebook,
        machine_type=notebook.machine_type,
        template=notebook.template,
        image="img",
        started_by=alice,
        status=Status.SCHEDULED,
        host=gpu2,
        placement=Placement.objects.create(
            host=gpu2,
            machine_type=notebook.machine_type,
            team=acme,
            workload="x",
            vcpus=1,
            memory_gib=1,
        ),
    )
    Placement.objects.filter(pk=session.placement_id).update(workload=session.workload)

    from apps.notebooks import lifecycle

    lifecycle.session_dispatch(session)

    session.refresh_from_db()
    notebook.refresh_from_db()
    assert session.exit_reason == "failed"
    assert notebook.status_message.startswith("Its files are only on gpu-1, which is offline")
    assert doubles.starts == []


# --- fencing --------------------------------------------------------------------------------


def test_a_host_back_after_its_notebook_moved_has_the_stale_container_removed_and_volume_unused(
    acme, alice, hosts, notebook, doubles, monkeypatch, settings
):
    gpu1, gpu2 = hosts
    first = start(acme, alice, notebook)
    assert first.host == gpu1
    ready_snapshot(notebook, gpu1, reason="schedule")
    go_offline(gpu1)
    upkeep.reconcile_sessions()
    second = start(acme, alice, notebook)
    assert second.host == gpu2

    # gpu-1 comes back and reports what it still runs: the first session's container.
    removed: list[tuple[str, str]] = []
    monkeypatch.setattr(
        agent.agent_remove_orphan,
        "apply_async",
        lambda args, **_: removed.append(tuple(args)),
    )
    ours = {f"{LABEL_PREFIX}installation": settings.LATTICE_INSTALLATION}
    stale = {"name": first.workload, "running": True, "labels": ours}
    gpu1.refresh_from_db()
    host_reported(gpu1, {"cpu_count": 16, "memory_bytes": 64 * 1024**3, "gpus": []}, [stale])
    gpu1.refresh_from_db()
    assert gpu1.status == Host.Status.READY
    reconcile()

    assert removed == [("gpu-1", first.workload)]  # an orphan now: removed, nothing else
    second.refresh_from_db()
    assert (second.status, second.ended_at) == (Status.RUNNING, None)

    # Its old volume (same name, stale files) is never started on as it is: the files are
    # gpu-2's now, so a start on gpu-1 restores them first.
    services.notebook_stop(team=acme, actor=alice, notebook=notebook)
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_saved=True)
    saved = ready_snapshot(notebook, gpu2, reason="stop")
    host_set_draining(host=gpu2, draining=True)

    third = start(acme, alice, notebook)

    assert third.host == gpu1
    assert doubles.starts[-1][0] == "gpu-1"
    assert doubles.starts[-1][2]["restore"]["snapshot"] == saved.pk


# --- draining -------------------------------------------------------------------------------


def test_draining_a_host_tells_its_running_notebooks_on_the_page(
    acme, alice, client, hosts, notebook, doubles
):
    gpu1, _ = hosts
    session = start(acme, alice, notebook)
    with transaction.atomic():
        host_set_draining(host=gpu1, draining=True)

    notice = (
        "Its host gpu-1 is being drained: your notebook keeps running; at its next stop it "
        "starts on another host, and its files go with it."
    )
    assert messages_of(session)[-1] == notice
    client.force_login(alice)
    page = client.get(reverse("notebooks:detail", args=[acme.slug, notebook.pk]))
    assert notice in page.content.decode()
    # Made ready again: no banner.
    host_set_draining(host=gpu1, draining=False)
    page = client.get(reverse("notebooks:detail", args=[acme.slug, notebook.pk]))
    assert notice not in page.content.decode()


def test_move_notebooks_now_stops_each_and_starts_it_elsewhere_with_its_files(
    acme, alice, admin_client, hosts, notebook, doubles
):
    gpu1, gpu2 = hosts
    first = start(acme, alice, notebook)
    assert first.host == gpu1
    changelist = reverse("admin:machines_host_changelist")
    admin_client.post(changelist, {"action": "drain", "_selected_action": [gpu1.pk]})

    response = admin_client.post(
        changelist, {"action": "move_now", "_selected_action": [gpu1.pk]}, follow=True
    )

    assert "Gpu-1: 1 notebook(s) stopping" in response.content.decode()
    first.refresh_from_db()
    assert first.exit_reason == "restarted"
    second = NotebookSession.objects.for_team(acme).exclude(pk=first.pk).get()
    # Placed on gpu-2, waiting for the snapshot gpu-1 takes as it stops (no move one asked).
    assert (second.host, second.status) == (gpu2, Status.SCHEDULED)
    snapshot = NotebookSnapshot.objects.for_team(acme).get(
        notebook=notebook, state=NotebookSnapshot.State.SAVING
    )
    assert snapshot.reason == NotebookSnapshot.Reason.STOP
    assert doubles.taken == []
    assert len(doubles.queued) == 1  # gpu-1's agent queued it on its own queue
    # It ends READY, as the save's completion makes it (the volume on gpu-1 is that snapshot).
    NotebookSnapshot.objects.unscoped().filter(pk=snapshot.pk).update(
        state=NotebookSnapshot.State.READY
    )
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_saved=True)
    snapshot.refresh_from_db()
    snapshot_ended(snapshot)

    second.refresh_from_db()
    assert second.status == Status.RUNNING
    assert doubles.starts[-1][:1] == ("gpu-2",)
    assert doubles.starts[-1][2]["restore"]["snapshot"] == snapshot.pk
    assert holder(notebook) == (gpu2.pk, False)


def test_move_notebooks_now_is_refused_on_a_host_not_draining(
    acme, alice, admin_client, hosts, notebook, doubles
):
    gpu1, _ = hosts
    first = start(acme, alice, notebook)
    response = admin_client.post(
        reverse("admin:machines_host_changelist"),
        {"action": "move_now", "_selected_action": [gpu1.pk]},
        follow=True,
    )
    assert "Gpu-1 is not draining: drain it first" in response.content.decode()
    first.refresh_from_db()
    assert first.status == Status.RUNNING


def test_a_host_is_removable_only_without_active_work_or_a_notebooks_only_copy(
    acme, alice, admin_client, hosts, notebook, doubles
):
    gpu1, _ = hosts
    blank = Host.objects.create(name="never-used")
    session = start(acme, alice, notebook)
    delete = reverse("admin:machines_host_delete", args=[gpu1.pk])

    page = admin_client.get(delete, follow=True)
    assert f"Gpu-1 still runs {session.workload}" in page.content.decode()
    with pytest.raises(HostError, match="still runs"):
        host_delete(host=gpu1)

    services.notebook_stop(team=acme, actor=alice, notebook=notebook)
    page = admin_client.post(delete, {"post": "yes"}, follow=True)
    assert "Gpu-1 holds the only copy of the files of acme/Churn model" in page.content.decode()
    assert Host.objects.filter(pk=gpu1.pk).exists()

    # Saved in a snapshot: that refusal goes (one with history is still revoked, not deleted).
    Notebook.objects.for_team(acme).filter(pk=notebook.pk).update(volume_saved=True)
    with pytest.raises(HostError, match="has run workloads"):
        host_delete(host=gpu1)
    admin_client.post(
        reverse("admin:machines_host_delete", args=[blank.pk]), {"post": "yes"}, follow=True
    )
    assert not Host.objects.filter(pk=blank.pk).exists()
