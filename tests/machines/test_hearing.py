"""A host's silence judged only while the control plane could hear it (apps.machines.hearing):
after the control worker was away (no reconciler pass for a while) or the agents were
locked out of the broker (their users made again), a silent host is not taken offline, nor
its work lost, until the control plane has heard for LATTICE_HOST_OFFLINE_AFTER."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from apps.machines import hearing, tasks
from apps.machines.models import Host, Placement
from apps.machines.scheduler import placement_create
from tests.factories import GPUDeviceFactory, HostFactory

pytestmark = pytest.mark.django_db

H100 = "NVIDIA H100 80GB HBM3"
AWAY = timedelta(minutes=5)


@pytest.fixture
def silent_host(settings, catalogue):
    """A host silent for 200 s with a placement on it: gone, were the control plane
    listening all along."""
    settings.LATTICE_HOST_OFFLINE_AFTER = 90
    host = HostFactory.create(name="hearing-a", last_heartbeat_at=timezone.now())
    GPUDeviceFactory.create(host=host, uuid="GPU-hearing", index=0, name=H100, memory_bytes=1)
    placement = placement_create(machine_type=catalogue["h100-80gb"], workload="w")
    Placement.objects.filter(pk=placement.pk).update(
        created_at=timezone.now() - timedelta(minutes=20)
    )
    Host.objects.filter(pk=host.pk).update(
        last_heartbeat_at=timezone.now() - timedelta(seconds=200)
    )
    return host, placement


def _state(host, placement):
    host.refresh_from_db()
    placement.refresh_from_db()
    return host.status, placement.active


def test_after_the_control_plane_was_away_a_silent_host_waits_to_be_heard(silent_host):
    host, placement = silent_host
    cache.set(hearing.LAST_PASS_KEY, (timezone.now() - AWAY).timestamp())  # worker was down

    assert tasks.reconcile()["offline"] == 0
    assert _state(host, placement) == (Host.Status.READY, True)
    assert tasks.reconcile()["offline"] == 0  # still within the deaf period

    # Heard for LATTICE_HOST_OFFLINE_AFTER since, and still silent: gone after all.
    hearing.deaf_since(timezone.now() - timedelta(seconds=91))
    counts = tasks.reconcile()
    assert (counts["offline"], counts["lost"]) == (1, 1)
    assert _state(host, placement) == (Host.Status.OFFLINE, False)


def test_with_the_reconciler_running_all_along_a_silent_host_goes_offline(silent_host):
    host, placement = silent_host
    cache.set(hearing.LAST_PASS_KEY, (timezone.now() - timedelta(seconds=5)).timestamp())

    assert tasks.reconcile()["offline"] == 1
    assert _state(host, placement) == (Host.Status.OFFLINE, False)


def test_agents_let_back_into_the_broker_are_not_judged_by_their_lockout(silent_host, monkeypatch):
    host, placement = silent_host
    monkeypatch.setattr(tasks, "broker_users_restore", lambda: [host.name])

    assert tasks.broker_users() == [host.name]  # Redis had lost its user until now
    assert tasks.reconcile()["offline"] == 0
    assert _state(host, placement) == (Host.Status.READY, True)
