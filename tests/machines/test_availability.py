"""Live availability per machine type, read from the ledger (apps.machines.availability)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.machines.availability import machine_type_availability, machine_type_offers
from apps.machines.models import Host, MachineType
from apps.machines.queue import placement_request
from apps.machines.scheduler import placement_create
from tests.factories import GPUDeviceFactory, HostFactory

GIB = 1024**3
H100 = "NVIDIA H100 80GB HBM3"


def make_host(name, *, cpus=16, memory_gib=64, gpus=0, status=Host.Status.READY, **gpu):
    host = HostFactory.create(
        name=name, status=status, cpu_count=cpus, memory_bytes=memory_gib * GIB
    )
    for index in range(gpus):
        GPUDeviceFactory.create(
            host=host, uuid=f"GPU-{name}-{index}", index=index, name=H100, **gpu
        )
    return host


def machine(slug):
    return MachineType.objects.get(slug=slug)


def offers():
    return {offer.machine_type.slug: offer for offer in machine_type_offers()}


@pytest.fixture(autouse=True)
def _catalogue(catalogue):
    return catalogue


@pytest.mark.django_db
class TestAvailability:
    def test_a_cpu_only_host_offers_cpu_types_and_no_gpu_type(self):
        make_host("cpu", cpus=16, memory_gib=64)

        found = offers()

        # cpu-small is 2 vCPU / 8 GiB: 8 fit in 16 vCPU / 64 GiB.
        assert found["cpu-small"].availability.state == "available"
        assert found["cpu-small"].availability.free == 8
        assert found["cpu-small"].availability.label == "Available now · 8 free"
        assert found["cpu-large"].availability.free == 2
        for slug in ("h100-80gb", "m4000", "free-gpu"):
            assert found[slug].availability.state == "unavailable"
            assert found[slug].availability.label == "No host here offers this type"
            assert found[slug].gpu_memory_bytes is None
        # Too big for the host in total: no host here offers it either.
        assert found["a100-80gb-x8"].availability.state == "unavailable"

    def test_a_host_offline_past_the_grace_offers_nothing(self, settings):
        down = make_host("down", status=Host.Status.OFFLINE)
        long_ago = timezone.now() - timedelta(seconds=settings.LATTICE_HOST_GRACE + 1)
        Host.objects.filter(pk=down.pk).update(last_heartbeat_at=long_ago)

        assert {o.availability.state for o in offers().values()} == {"unavailable"}

    @pytest.mark.parametrize("away", [Host.Status.DRAINING, Host.Status.OFFLINE])
    def test_a_host_away_for_a_while_makes_its_types_wait_not_refused(self, away):
        away_host = make_host("away", status=away)
        Host.objects.filter(pk=away_host.pk).update(last_heartbeat_at=timezone.now())

        found = offers()

        small = found["cpu-small"].availability
        assert (small.state, small.free, small.waiting_for_host) == ("busy", 0, True)
        assert small.label.startswith("Busy · its hosts are away")
        # Too big for it in total: still no host here offers it.
        assert found["a100-80gb-x8"].availability.state == "unavailable"

    def test_a_full_host_makes_the_type_busy_with_its_queue(self):
        make_host("cpu", cpus=4, memory_gib=16)
        small = machine("cpu-small")
        placement_create(machine_type=small, workload="w1")
        placement_create(machine_type=small, workload="w2")
        placement_request(machine_type=small, workload="w3")

        availability = machine_type_availability(small)

        assert (availability.state, availability.free, availability.queued) == ("busy", 0, 1)
        assert availability.label == "Busy · queue of 1"

    def test_gpu_type_needs_free_whole_gpus_of_its_model(self):
        make_host("gpu", cpus=64, memory_gib=512, gpus=2, memory_bytes=80 * GIB)
        make_host("mig", cpus=64, memory_gib=512, gpus=1, mig_enabled=True)
        h100 = machine("h100-80gb")

        found = offers()["h100-80gb"]
        assert (found.availability.state, found.availability.free) == ("available", 2)
        assert found.gpu_memory_gib == 80

        placement_create(machine_type=h100, workload="a")
        placement_create(machine_type=h100, workload="b")
        assert machine_type_availability(h100).state == "busy"

    def test_queries_do_not_grow_with_hosts_or_types(self):
        for n in range(6):
            make_host(f"h{n}", cpus=64, memory_gib=512, gpus=2)

        with CaptureQueriesContext(connection) as queries:
            found = machine_type_offers()

        assert len(found) == MachineType.objects.filter(active=True).count()
        assert len(queries) <= 5
