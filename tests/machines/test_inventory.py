"""Host inventory: parsed from a real H100 host's captures, and read from this machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apps.machines.inventory import collect, gpus_from_nvidia_smi_xml, gpus_from_nvml_json
from apps.machines.models import GPUDevice, Host
from apps.machines.services import host_apply_inventory

H100 = Path(__file__).parents[1] / "fixtures" / "gpu" / "h100-80gb"
UUID = "GPU-760f8a75-6c8e-6441-bcc9-a8cf94fe74a1"


def test_the_nvml_capture_of_an_h100():
    driver, gpus = gpus_from_nvml_json(json.loads((H100 / "nvml.json").read_text()))

    assert driver == "580.159.04"
    assert gpus == [
        {
            "index": 0,
            "uuid": UUID,
            "name": "NVIDIA H100 80GB HBM3",
            "memory_total": 85_520_809_984,
            "mig_mode": [0, 0],
        },
    ]


def test_nvidia_smi_xml_says_the_same_as_nvml():
    driver, gpus = gpus_from_nvidia_smi_xml((H100 / "nvidia-smi-q.xml").read_text())
    _, from_nvml = gpus_from_nvml_json(json.loads((H100 / "nvml.json").read_text()))

    assert driver == "580.159.04"
    assert gpus == from_nvml


def test_the_h100_name_matches_the_catalogue(catalogue):
    _, gpus = gpus_from_nvml_json(json.loads((H100 / "nvml.json").read_text()))

    assert catalogue["h100-80gb"].gpu_model == gpus[0]["name"]


def test_collect_reads_this_machine():
    inventory = collect()

    assert inventory["cpu_count"] >= 1
    assert inventory["memory_bytes"] > 256 * 1024**2
    assert inventory["disk_bytes"] > 0
    # No NVIDIA driver in CI: NVML answers nothing rather than failing.
    assert isinstance(inventory["gpus"], list)


@pytest.mark.django_db
def test_applying_inventory_records_gpus_and_marks_vanished_ones():
    host = Host.objects.create(name="gpu-1")
    inventory = {
        "cpu_count": 20,
        "memory_bytes": 240 * 1024**3,
        "disk_bytes": 10**12,
        "driver_version": "580.159.04",
        "gpus": gpus_from_nvml_json(json.loads((H100 / "nvml.json").read_text()))[1],
    }

    host_apply_inventory(host=host, inventory=inventory)
    gpu = GPUDevice.objects.get(uuid=UUID)
    assert (gpu.host, gpu.name, gpu.memory_bytes, gpu.present) == (
        host,
        "NVIDIA H100 80GB HBM3",
        85_520_809_984,
        True,
    )

    host_apply_inventory(host=host, inventory={**inventory, "gpus": []})
    gpu.refresh_from_db()
    assert not gpu.present
    host.refresh_from_db()
    assert (host.cpu_count, host.status) == (20, Host.Status.READY)


class FakeNVML:
    """Stands in for the NVIDIA driver (outside the project): an H100 split into two
    MIG instances, answering the nvidia-ml-py calls the inventory makes, with the
    values of the real capture."""

    class NVMLError(Exception):
        pass

    class _Memory:
        def __init__(self, total):
            self.total = total

    GPU = "gpu0"
    MIGS = {0: "mig0", 1: "mig1"}

    def nvmlInit(self):  # noqa: N802 - the library's names
        pass

    def nvmlShutdown(self):  # noqa: N802
        pass

    def nvmlSystemGetDriverVersion(self):  # noqa: N802
        return "580.159.04"

    def nvmlDeviceGetCount(self):  # noqa: N802
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):  # noqa: N802
        return self.GPU

    def nvmlDeviceGetUUID(self, handle):  # noqa: N802
        return {
            "gpu0": UUID,
            "mig0": "MIG-11111111-2222-3333-4444-555555555555",
            "mig1": "MIG-66666666-7777-8888-9999-000000000000",
        }[handle]

    def nvmlDeviceGetName(self, handle):  # noqa: N802
        return {"gpu0": "NVIDIA H100 80GB HBM3"}.get(handle, "NVIDIA H100 80GB HBM3 MIG 3g.40gb")

    def nvmlDeviceGetMemoryInfo(self, handle):  # noqa: N802
        return self._Memory(85_520_809_984 if handle == "gpu0" else 42_412_802_048)

    def nvmlDeviceGetMigMode(self, handle):  # noqa: N802
        return (1, 1)

    def nvmlDeviceGetMaxMigDeviceCount(self, handle):  # noqa: N802
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle, index):  # noqa: N802
        if index not in self.MIGS:
            raise self.NVMLError("not found")
        return self.MIGS[index]


def test_mig_instances_are_rows_of_their_own(monkeypatch):
    import sys

    from apps.machines.inventory import gpus_from_nvml

    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML())

    driver, gpus = gpus_from_nvml()

    assert driver == "580.159.04"
    assert [(g["uuid"], g.get("parent_uuid", "")) for g in gpus] == [
        (UUID, ""),
        ("MIG-11111111-2222-3333-4444-555555555555", UUID),
        ("MIG-66666666-7777-8888-9999-000000000000", UUID),
    ]
    assert gpus[1]["name"] == "NVIDIA H100 80GB HBM3 MIG 3g.40gb"


def test_without_a_driver_there_are_no_gpus(monkeypatch):
    import sys

    from apps.machines.inventory import gpus_from_nvml

    class NoDriver(FakeNVML):
        def nvmlInit(self):  # noqa: N802
            raise self.NVMLError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", NoDriver())

    assert gpus_from_nvml() == ("", [])


@pytest.mark.django_db
def test_an_unchanged_report_writes_no_gpu_rows(django_assert_num_queries):
    host = Host.objects.create(name="gpu-2")
    gpus = [
        {"index": i, "uuid": f"GPU-{i}", "name": "NVIDIA H100 80GB HBM3", "memory_total": 1}
        for i in range(8)
    ]
    inventory = {"cpu_count": 20, "memory_bytes": 1, "gpus": gpus}
    host_apply_inventory(host=host, inventory=inventory)

    # A savepoint, lock and save the host, read its GPUs, mark none missing, release:
    # the same six queries for eight GPUs as for one, not an upsert per GPU.
    with django_assert_num_queries(6):
        host_apply_inventory(host=host, inventory=inventory)
    assert GPUDevice.objects.filter(host=host, present=True).count() == 8


def test_an_inventory_file_replaces_nvml(settings, monkeypatch):
    from apps.machines import inventory

    two = Path(__file__).parents[1] / "fixtures" / "gpu" / "h100-80gb-x2-derived" / "nvml.json"
    monkeypatch.setattr(inventory, "gpus_from_nvml", lambda: pytest.fail("NVML was read"))
    settings.LATTICE_AGENT_GPU_INVENTORY = str(two)

    found = collect()

    assert found["driver_version"] == "580.159.04"
    assert [g["uuid"] for g in found["gpus"]] == [
        "GPU-5e1a7c3d-0b2f-4c61-9d8e-1f2a3b4c5d01",
        "GPU-5e1a7c3d-0b2f-4c61-9d8e-1f2a3b4c5d02",
    ]
    assert {g["name"] for g in found["gpus"]} == {"NVIDIA H100 80GB HBM3"}
