"""The reconciler with real containers: both directions, and silent hosts."""

from __future__ import annotations

import contextlib
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from docker.errors import NotFound

from apps.machines.agent import agent_report, agent_start, spec_to_task
from apps.machines.identity import identity_set, new_key
from apps.machines.models import GPUAllocation, Host, Placement
from apps.machines.scheduler import placement_create
from apps.machines.tasks import reconcile
from apps.runtimes.base import Spec
from apps.runtimes.docker import DockerRuntime
from tests.factories import GPUDeviceFactory, HostFactory

pytestmark = pytest.mark.django_db

H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture
def host(settings, catalogue, docker_client):
    settings.LATTICE_RUNTIME = "docker"
    name = f"rec-{uuid.uuid4().hex[:6]}"
    host = HostFactory.create(name=name, last_heartbeat_at=timezone.now(), signing_key=new_key())
    identity_set(name, host.signing_key)  # this test process is its agent too
    GPUDeviceFactory.create(host=host, uuid=f"GPU-{name}", index=0, name=H100, memory_bytes=1)
    return host


@pytest.fixture
def cleanup(docker_client):
    names: list[str] = []
    yield names
    for name in names:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)


def web_spec(image, name, installation=None):
    from django.conf import settings

    return Spec(
        name=name,
        image=image,
        command=["/bin/busybox", "httpd", "-f", "-p", "{port}", "-h", "/www"],
        memory_bytes=64 * 1024**2,
        labels={"host": "test", "installation": installation or settings.LATTICE_INSTALLATION},
    )


def report(host):
    agent_report(host.name)  # eager in tests: the control task runs inline too
    host.refresh_from_db()


def test_a_container_removed_behind_our_back_is_lost_and_its_gpu_freed(
    host, busybox_image, docker_client, cleanup, catalogue
):
    placement = placement_create(machine_type=catalogue["h100-80gb"], workload=f"w-{host.name}")
    cleanup.append(placement.workload)
    agent_start(host.name, spec_to_task(web_spec(busybox_image, placement.workload)))
    Placement.objects.filter(pk=placement.pk).update(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    report(host)
    assert placement.workload in {w["name"] for w in host.reported_workloads if w["running"]}
    assert reconcile() == {"offline": 0, "lost": 0, "orphans": 0, "placed": 0}
    last_seen = host.reported_at

    docker_client.containers.get(DockerRuntime.container_name(placement.workload)).remove(
        force=True
    )
    report(host)
    assert reconcile()["lost"] == 0  # one report missing it could be a fluke
    report(host)
    counts = reconcile()

    placement.refresh_from_db()
    assert counts["lost"] == 1
    assert (placement.active, placement.end_reason) == (False, "lost")
    # Billed up to the last report that saw it running, not the one that gave up on it.
    assert placement.released_at == last_seen
    assert placement.released_at < host.reported_at
    assert not GPUAllocation.objects.filter(placement=placement, active=True).exists()


def test_a_labelled_orphan_is_removed(host, busybox_image, docker_client, cleanup):
    orphan = f"orphan-{host.name}"
    cleanup.append(orphan)
    DockerRuntime(docker_client).start(web_spec(busybox_image, orphan))
    report(host)

    counts = reconcile()

    assert counts["orphans"] == 1
    with pytest.raises(NotFound):
        docker_client.containers.get(DockerRuntime.container_name(orphan))


def test_another_lattices_workload_on_the_same_engine_is_left_alone(
    host, busybox_image, docker_client, cleanup
):
    # A dev server and a test run, or two Lattices, sharing one Docker engine.
    neighbour = f"neighbour-{host.name}"
    cleanup.append(neighbour)
    DockerRuntime(docker_client).start(web_spec(busybox_image, neighbour, "another-lattice"))
    report(host)

    counts = reconcile()

    assert counts["orphans"] == 0
    assert docker_client.containers.get(DockerRuntime.container_name(neighbour)).status == (
        "running"
    )


def test_a_workload_placed_after_the_report_is_not_judged_by_it(host, catalogue):
    report(host)  # the host now has this machine's real inventory: CPUs, no GPU
    placement = placement_create(machine_type=catalogue["cpu-small"], workload="new-one")

    assert reconcile()["lost"] == 0
    placement.refresh_from_db()
    assert placement.active


def test_a_silent_host_goes_offline_and_its_work_is_lost_as_of_its_last_heartbeat(host, catalogue):
    placement = placement_create(machine_type=catalogue["h100-80gb"], workload="w")
    Placement.objects.filter(pk=placement.pk).update(
        created_at=timezone.now() - timedelta(minutes=20),
    )
    last_seen = timezone.now() - timedelta(minutes=10)
    Host.objects.filter(pk=host.pk).update(last_heartbeat_at=last_seen)

    counts = reconcile()

    host.refresh_from_db()
    placement.refresh_from_db()
    assert counts["offline"] == 1
    assert host.status == Host.Status.OFFLINE
    assert (placement.active, placement.end_reason, placement.released_at) == (
        False,
        "lost",
        last_seen,
    )
    # A later report brings it back.
    report(host)
    assert host.status == Host.Status.READY


def test_a_report_that_waited_in_the_queue_does_not_judge_newer_placements(host, catalogue):
    from apps.machines.reports import host_reported

    taken = timezone.now() - timedelta(minutes=3)  # the agent took it 3 minutes ago
    placement = placement_create(machine_type=catalogue["cpu-small"], workload="young")
    Placement.objects.filter(pk=placement.pk).update(
        created_at=timezone.now() - timedelta(minutes=2)
    )

    for _ in range(3):
        host_reported(host, {"cpu_count": 64, "memory_bytes": 512 * 1024**3}, [], taken.timestamp())
        reconcile()

    placement.refresh_from_db()
    assert placement.active
    host.refresh_from_db()
    assert host.reported_at == taken


def test_a_host_lost_with_many_placements_moves_the_lines_once(
    catalogue, django_capture_on_commit_callbacks
):
    host = HostFactory.create(
        name="many", cpu_count=16, memory_bytes=64 * 1024**3, last_heartbeat_at=timezone.now()
    )
    for n in range(3):
        placement_create(machine_type=catalogue["cpu-small"], workload=f"w{n}")
    Host.objects.filter(pk=host.pk).update(last_heartbeat_at=timezone.now() - timedelta(minutes=10))

    # Outermost, so it also sees what the callbacks run on commit.
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
    ):
        counts = reconcile()

    assert counts["lost"] == 3
    assert not Placement.objects.filter(active=True).exists()
    # queue_advance_all's first read (which lines have someone waiting): once a pass, not
    # once more per placement lost.
    advances = [
        q
        for q in queries
        if q["sql"].startswith('SELECT DISTINCT "machines_placementrequest"."machine_type_id"')
    ]
    assert len(advances) == 1, len(advances)


def test_what_was_queued_for_a_host_that_went_offline_is_dropped(host, catalogue):
    """A start resent to a silent host (issue 20's host-power fault) must not be taken by
    its agent when it comes back: its session ended lost when the host went offline."""
    from config.celery import app

    other = HostFactory.create()
    with app.connection_for_write() as conn:
        for name in (host.queue, other.queue):
            queue = conn.SimpleQueue(name)
            queue.put({"task": "agent.start"})
            queue.close()
    Host.objects.filter(pk=host.pk).update(last_heartbeat_at=timezone.now() - timedelta(minutes=10))

    assert reconcile()["offline"] == 1

    with app.connection_for_write() as conn:
        left = {name: conn.SimpleQueue(name).qsize() for name in (host.queue, other.queue)}
    assert left == {host.queue: 0, other.queue: 1}  # only the offline host's queue


def test_a_young_workload_that_died_after_a_report_saw_it_run_is_lost_within_two_reports(
    host, catalogue
):
    # Issue 20's engine fault: the host's Docker engine killed and started again under a live
    # agent, seconds after the workload was placed. A report saw it running; the next two
    # show its container stopped. Lost then, as of the report that saw it, not once the
    # grace (a start in flight) has passed since its placement.
    from django.conf import settings

    from apps.machines.reports import host_reported

    inventory = {"cpu_count": 64, "memory_bytes": 512 * 1024**3}
    placement = placement_create(machine_type=catalogue["cpu-small"], workload="young")
    labels = {"lattice.installation": settings.LATTICE_INSTALLATION}
    now = timezone.now()
    seen = now - timedelta(seconds=3)
    host_reported(
        host, inventory, [{"name": "young", "running": True, "labels": labels}], seen.timestamp()
    )
    reconcile()
    dead = [{"name": "young", "running": False, "labels": labels}]
    host_reported(host, inventory, dead, (seen + timedelta(seconds=1)).timestamp())
    assert reconcile()["lost"] == 0  # one report missing it could be a fluke
    host_reported(host, inventory, dead, (seen + timedelta(seconds=2)).timestamp())
    counts = reconcile()

    placement.refresh_from_db()
    assert counts["lost"] == 1
    assert (placement.active, placement.end_reason) == (False, "lost")
    assert placement.released_at == seen
