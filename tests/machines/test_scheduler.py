"""The GPU ledger: placing workloads on hosts, by UUID, never twice."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.machines.identity import new_key
from apps.machines.models import GPUAllocation, GPUDevice, Host, HostJoinToken, MachineType
from apps.machines.scheduler import (
    NoCapacityError,
    double_allocations,
    overcommitted_hosts,
    placement_create,
    placement_gpu_uuids,
    placement_release,
    spec_limits,
)
from apps.machines.services import HostError, host_register, join_token_create
from tests.factories import GPUDeviceFactory, HostFactory

GIB = 1024**3
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"


def make_host(name, *, cpus=64, memory_gib=512, gpus=(), status=Host.Status.READY):
    host = HostFactory.create(
        name=name, status=status, cpu_count=cpus, memory_bytes=memory_gib * GIB
    )
    models = [model for model, count in gpus for _ in range(count)]
    for index, model in enumerate(models):
        GPUDeviceFactory.create(host=host, uuid=f"GPU-{name}-{index}", index=index, name=model)
    return host


@pytest.fixture(autouse=True)
def _catalogue(catalogue):
    return catalogue


def machine(slug):
    return MachineType.objects.get(slug=slug)


@pytest.mark.django_db
class TestPlacing:
    def test_a_gpu_machine_gets_gpus_of_its_model_by_uuid(self):
        make_host("a100s", gpus=[(A100, 2)])
        make_host("h100s", gpus=[(H100, 2)])

        placement = placement_create(machine_type=machine("h100-80gb"), workload="nb:1")

        assert placement.host.name == "h100s"
        assert placement_gpu_uuids(placement) == ["GPU-h100s-0"]

    def test_nothing_fits_when_no_host_has_the_model(self):
        make_host("a100s", gpus=[(A100, 2)])

        with pytest.raises(NoCapacityError, match="H100 80 GB"):
            placement_create(machine_type=machine("h100-80gb"), workload="nb:1")

    def test_draining_and_offline_hosts_take_nothing_new(self):
        make_host("draining", gpus=[(H100, 1)], status=Host.Status.DRAINING)
        make_host("offline", gpus=[(H100, 1)], status=Host.Status.OFFLINE)

        with pytest.raises(NoCapacityError):
            placement_create(machine_type=machine("h100-80gb"), workload="nb:1")

    def test_gpus_run_out_and_come_back_on_release(self):
        make_host("h100s", gpus=[(H100, 2)])
        first = placement_create(machine_type=machine("h100-80gb"), workload="nb:1")
        second = placement_create(machine_type=machine("h100-80gb"), workload="nb:2")
        assert {*placement_gpu_uuids(first), *placement_gpu_uuids(second)} == {
            "GPU-h100s-0",
            "GPU-h100s-1",
        }
        with pytest.raises(NoCapacityError):
            placement_create(machine_type=machine("h100-80gb"), workload="nb:3")

        placement_release(placement=first)
        placement_release(placement=first)  # twice is harmless

        third = placement_create(machine_type=machine("h100-80gb"), workload="nb:3")
        assert placement_gpu_uuids(third) == ["GPU-h100s-0"]

    def test_eight_gpus_come_from_one_host(self):
        make_host("four-a", gpus=[(A100, 4)])
        make_host("four-b", gpus=[(A100, 4)])
        make_host("eight", cpus=128, memory_gib=1024, gpus=[(A100, 8)])

        placement = placement_create(machine_type=machine("a100-80gb-x8"), workload="train:1")

        assert placement.host.name == "eight"
        assert len(placement_gpu_uuids(placement)) == 8

    def test_cpu_and_memory_are_capacity_too(self):
        make_host("small", cpus=10, memory_gib=64)
        cpu_large = machine("cpu-large")  # 8 vCPU, 32 GiB

        placement_create(machine_type=cpu_large, workload="nb:1")
        with pytest.raises(NoCapacityError):
            placement_create(machine_type=cpu_large, workload="nb:2")
        placement_create(machine_type=machine("cpu-small"), workload="nb:3")  # 2 vCPU fits

        assert overcommitted_hosts() == 0

    def test_a_gpu_that_left_the_inventory_is_not_placed(self):
        make_host("h100s", gpus=[(H100, 1)])
        GPUDevice.objects.update(present=False)

        with pytest.raises(NoCapacityError):
            placement_create(machine_type=machine("h100-80gb"), workload="nb:1")

    def test_the_database_refuses_a_second_active_allocation(self):
        make_host("h100s", gpus=[(H100, 1)])
        placement = placement_create(machine_type=machine("h100-80gb"), workload="nb:1")

        with pytest.raises(IntegrityError), transaction.atomic():
            GPUAllocation.objects.create(
                placement=placement, gpu=GPUDevice.objects.get(uuid="GPU-h100s-0")
            )


def place_at_once(machine_type, count):
    """``count`` threads place ``machine_type`` at the same moment: (placed, refused, errors)."""
    start = threading.Barrier(count)
    placed, refused, errors = [], [], []

    def place(n):
        try:
            start.wait()
            placed.append(placement_create(machine_type=machine_type, workload=f"nb:{n}"))
        except NoCapacityError:
            refused.append(n)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=place, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return placed, refused, errors


@pytest.mark.django_db(transaction=True)
def test_fifty_threads_placing_at_once_never_share_a_gpu(postgres):
    for name in ("g1", "g2", "g3"):
        make_host(name, cpus=40, memory_gib=1024, gpus=[(H100, 4)])

    # 20 vCPU each: CPU allows 2 per host, GPUs would allow 4.
    placed, refused, errors = place_at_once(machine("h100-80gb"), 50)

    assert errors == []
    assert len(placed) == 6
    assert len(refused) == 44
    uuids = [u for p in placed for u in placement_gpu_uuids(p)]
    assert len(uuids) == len(set(uuids)) == 6
    assert double_allocations() == 0
    assert overcommitted_hosts() == 0


@pytest.mark.django_db(transaction=True)
def test_fifty_threads_on_few_gpus(postgres):
    for name in ("g1", "g2", "g3"):
        make_host(name, cpus=1000, memory_gib=10_000, gpus=[(H100, 4)])

    placed, refused, errors = place_at_once(machine("h100-80gb"), 50)

    assert errors == []
    assert len(placed) == 12  # every GPU used once, none twice
    assert len(refused) == 38
    assert double_allocations() == 0


@pytest.mark.django_db
class TestJoining:
    def test_a_host_joins_once_with_a_token(self):
        token = join_token_create(actor=None, host_name="gpu-7", workload_address="10.0.0.7")
        inventory = {"cpu_count": 16, "memory_bytes": 64 * GIB, "disk_bytes": 10**12, "gpus": []}
        key = new_key()

        host = host_register(
            name="gpu-7", join_token=token.join_token, key=key, inventory=inventory
        )

        assert (host.status, host.cpu_count) == (Host.Status.READY, 16)
        assert (host.signing_key, host.workload_address) == (key, "10.0.0.7")
        assert token.join_token not in str(list(HostJoinToken.objects.values()))
        with pytest.raises(HostError, match="not valid"):
            host_register(name="gpu-7", join_token=token.join_token, key=new_key(), inventory={})
        host.refresh_from_db()
        assert host.signing_key == key

    def test_an_expired_or_wrong_token_is_refused(self):
        token = join_token_create(actor=None, host_name="gpu-9").join_token
        HostJoinToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

        with pytest.raises(HostError):
            host_register(name="gpu-9", join_token=token, key=new_key(), inventory={})
        with pytest.raises(HostError):
            host_register(name="gpu-9", join_token="latjoin_guess", key=new_key(), inventory={})
        assert not Host.objects.filter(name="gpu-9").exists()

    def test_a_token_joins_only_the_name_it_was_made_for(self):
        token = join_token_create(actor=None, host_name="gpu-10").join_token

        with pytest.raises(HostError, match="not made for a host named gpu-11"):
            host_register(name="gpu-11", join_token=token, key=new_key(), inventory={})
        assert not Host.objects.filter(name="gpu-11").exists()

    def test_no_token_is_made_for_a_name_a_host_holds(self):
        HostFactory.create(name="gpu-12", signing_key=new_key())

        with pytest.raises(HostError, match="already registered"):
            join_token_create(actor=None, host_name="gpu-12")
        with pytest.raises(HostError, match="not a host name"):
            join_token_create(actor=None, host_name="gpu-*")


@pytest.mark.django_db
class TestWaitingLine:
    def test_requests_wait_in_order_and_move_up_as_room_frees(self):
        from apps.machines.models import PlacementRequest
        from apps.machines.queue import placement_request, queue_advance, queue_position

        make_host("h100s", gpus=[(H100, 1)])
        h100 = machine("h100-80gb")
        first = placement_request(machine_type=h100, workload="nb:1")
        second = placement_request(machine_type=h100, workload="nb:2")
        third = placement_request(machine_type=h100, workload="nb:3")

        assert first.status == PlacementRequest.Status.PLACED
        assert (queue_position(second), queue_position(third)) == (1, 2)

        assert first.placement is not None
        placement_release(placement=first.placement)
        assert queue_advance(machine_type=h100) == 1

        second.refresh_from_db()
        third.refresh_from_db()
        assert second.status == PlacementRequest.Status.PLACED
        assert second.placement is not None
        assert placement_gpu_uuids(second.placement) == ["GPU-h100s-0"]
        assert queue_position(third) == 1

    def test_a_newcomer_does_not_overtake_the_line(self):
        from apps.machines.queue import placement_request, queue_position

        make_host("h100s", gpus=[(H100, 1)])
        h100 = machine("h100-80gb")
        holder = placement_request(machine_type=h100, workload="nb:1")
        waiting = placement_request(machine_type=h100, workload="nb:2")
        assert holder.placement is not None
        placement_release(placement=holder.placement)

        # Room is free, but nb:2 was first in line: it gets the room, nb:3 waits.
        newcomer = placement_request(machine_type=h100, workload="nb:3")

        waiting.refresh_from_db()
        assert waiting.placement is not None
        assert queue_position(newcomer) == 1

    def test_asking_twice_for_the_same_workload_is_one_request(self):
        from apps.machines.models import PlacementRequest
        from apps.machines.queue import placement_request

        make_host("h100s", gpus=[(H100, 1)])
        h100 = machine("h100-80gb")

        first = placement_request(machine_type=h100, workload="nb:1")
        again = placement_request(machine_type=h100, workload="nb:1")

        assert first.pk == again.pk
        assert PlacementRequest.objects.count() == 1
        assert double_allocations() == 0


@pytest.mark.django_db
def test_draining_from_the_admin_stops_new_placements(client):
    from apps.accounts.models import User

    admin = User.objects.create_superuser("root@example.com", "x" * 12)
    client.force_login(admin)
    host = make_host("h100s", gpus=[(H100, 2)])

    client.post(
        "/admin/machines/host/",
        {"action": "drain", "_selected_action": [host.pk]},
    )

    host.refresh_from_db()
    assert host.status == Host.Status.DRAINING
    with pytest.raises(NoCapacityError):
        placement_create(machine_type=machine("h100-80gb"), workload="nb:1")


@pytest.mark.django_db
def test_a_mig_enabled_gpu_is_handed_out_only_as_its_instances():
    from apps.machines.services import host_apply_inventory

    host = make_host("mig", cpus=256, memory_gib=2048)
    host_apply_inventory(
        host=host,
        inventory={
            "cpu_count": 256,
            "memory_bytes": 2048 * GIB,
            "gpus": [
                {
                    "index": 0,
                    "uuid": "GPU-parent",
                    "name": A100,
                    "memory_total": 80 * GIB,
                    "mig_mode": [1, 1],
                },
                {
                    "index": 0,
                    "uuid": "MIG-a",
                    "name": A100,
                    "memory_total": 40 * GIB,
                    "parent_uuid": "GPU-parent",
                },
            ],
        },
    )

    placement = placement_create(machine_type=machine("a100-80gb"), workload="nb:1")
    assert placement_gpu_uuids(placement) == ["MIG-a"]
    with pytest.raises(NoCapacityError):
        placement_create(machine_type=machine("a100-80gb"), workload="nb:2")


@pytest.mark.django_db
def test_gpu_hosts_filled_with_cpu_work_do_not_hide_the_free_ones():
    # Twelve GPU hosts whose CPUs are taken by CPU machines, then one with room.
    for n in range(12):
        make_host(f"busy{n:02d}", cpus=2, memory_gib=8, gpus=[(H100, 1)])
        placement_create(machine_type=machine("cpu-small"), workload=f"cpu:{n}")
    make_host("zfree", cpus=64, memory_gib=512, gpus=[(H100, 1)])

    placement = placement_create(machine_type=machine("h100-80gb"), workload="gpu:1")

    assert placement.host.name == "zfree"


@pytest.mark.django_db
def test_a_workload_asking_again_after_release_gets_a_new_place():
    from apps.machines.models import PlacementRequest
    from apps.machines.queue import placement_request

    make_host("h100s", gpus=[(H100, 1)])
    h100 = machine("h100-80gb")
    first = placement_request(machine_type=h100, workload="nb:1")
    assert first.placement is not None
    placement_release(placement=first.placement)

    again = placement_request(machine_type=h100, workload="nb:1")

    assert again.status == PlacementRequest.Status.PLACED
    assert again.placement is not None
    assert again.placement.active


@pytest.mark.django_db(transaction=True)
def test_two_lines_advancing_at_once_keep_order_and_never_deadlock(postgres):
    from apps.machines.models import PlacementRequest
    from apps.machines.queue import placement_request, queue_advance

    for name in ("g1", "g2"):
        make_host(name, gpus=[(H100, 2)])
    h100 = machine("h100-80gb")
    holders = [placement_request(machine_type=h100, workload=f"hold:{n}") for n in range(4)]
    waiting = [placement_request(machine_type=h100, workload=f"wait:{n}") for n in range(3)]
    assert all(w.status == PlacementRequest.Status.WAITING for w in waiting)
    for holder in holders[:2]:
        assert holder.placement is not None
        placement_release(placement=holder.placement)

    errors: list[str] = []

    def advance():
        try:
            queue_advance(machine_type=h100)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=advance) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    states = [PlacementRequest.objects.get(workload=f"wait:{n}").status for n in range(3)]
    assert states == ["placed", "placed", "waiting"]


@pytest.mark.django_db
def test_a_draining_host_that_goes_offline_comes_back_draining():
    from apps.machines.services import host_apply_inventory, host_set_draining

    host = make_host("h100s", gpus=[(H100, 1)])
    host_set_draining(host=host, draining=True)
    Host.objects.filter(pk=host.pk).update(status=Host.Status.OFFLINE)

    host = host_apply_inventory(host=host, inventory={"cpu_count": 64, "memory_bytes": 512 * GIB})

    assert host.status == Host.Status.DRAINING
    host_set_draining(host=host, draining=False)
    host.refresh_from_db()
    assert host.status == Host.Status.READY


@pytest.mark.django_db(transaction=True)
def test_a_host_row_held_by_a_report_delays_the_line_but_does_not_stop_it(postgres):
    # The agent's report holds the host's row for a moment; a request arriving
    # then must wait for it, not stay queued until something else frees room.
    from apps.machines.models import PlacementRequest
    from apps.machines.queue import placement_request

    host = make_host("busy")
    locked, release = threading.Event(), threading.Event()

    def report():
        try:
            with transaction.atomic():
                Host.objects.select_for_update().get(pk=host.pk)
                locked.set()
                release.wait(5)
        finally:
            connection.close()

    reporter = threading.Thread(target=report)
    reporter.start()
    assert locked.wait(5)
    threading.Timer(0.5, release.set).start()

    request = placement_request(machine_type=machine("cpu-small"), workload="nb-1-s1")

    reporter.join(5)
    assert request.status == PlacementRequest.Status.PLACED
    assert request.placement is not None
    assert request.placement.host == host


@pytest.mark.django_db
def test_a_workloads_spec_limits_are_its_machine_types_and_its_placements_gpus():
    # One place says it for notebooks, deployments' replicas and jobs' attempts.
    make_host("h100s", gpus=[(H100, 2)])
    h100 = machine("h100-80gb")
    placement = placement_create(machine_type=h100, workload="nb:limits")
    assert spec_limits(h100, placement) == {
        "vcpus": float(h100.vcpus),
        "memory_bytes": h100.memory_gib * GIB,
        "gpu_uuids": ["GPU-h100s-0"],
    }
    small = machine("cpu-small")
    cpu = placement_create(machine_type=small, workload="nb:limits-cpu")
    assert spec_limits(small, cpu) == {
        "vcpus": float(small.vcpus),
        "memory_bytes": small.memory_gib * GIB,
        "gpu_uuids": [],
    }


@pytest.mark.django_db
class TestPreferredHost:
    """A notebook's volume host first (apps.notebooks.volumes), else first-fit as without."""

    def test_the_preferred_host_is_taken_when_it_has_room(self):
        make_host("first", gpus=[(H100, 2)])
        second = make_host("second", gpus=[(H100, 2)])

        placement = placement_create(
            machine_type=machine("h100-80gb"), workload="nb:1", prefer_host_id=second.pk
        )

        assert placement.host == second
        assert placement_gpu_uuids(placement) == ["GPU-second-0"]

    @pytest.mark.parametrize("why", ["full", "draining", "offline", "too small"])
    def test_otherwise_first_fit_among_the_others(self, why):
        first = make_host("first", gpus=[(H100, 2)])
        make_host("third", gpus=[(H100, 2)])
        preferred = make_host(
            "preferred",
            gpus=[(H100, 1 if why == "full" else 2)],
            cpus=64 if why != "too small" else 1,
            status={"draining": Host.Status.DRAINING, "offline": Host.Status.OFFLINE}.get(
                why, Host.Status.READY
            ),
        )
        if why == "full":
            placement_create(
                machine_type=machine("h100-80gb"), workload="other", host_id=preferred.pk
            )

        placement = placement_create(
            machine_type=machine("h100-80gb"), workload="nb:1", prefer_host_id=preferred.pk
        )

        assert placement.host == first
        assert double_allocations() == 0
