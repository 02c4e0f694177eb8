"""What a host has: GPUs through NVML, CPU, memory and disk through psutil.

The agent runs ``collect()`` on the host and sends the result, a plain dict,
to the control queue. The parsers here also read the captures of a real H100
host in ``shared/fixtures/gpu/h100-80gb/`` (tests/machines/test_inventory.py).
"""

from __future__ import annotations

import json
import logging
import platform
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def gpus_from_nvml() -> tuple[str, list[dict[str, Any]]]:
    """(driver version, GPUs and MIG instances) from the NVML library, or ("", []) without one."""
    try:
        import pynvml
    except ImportError:  # pragma: no cover - nvidia-ml-py is a dependency
        return "", []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        logger.debug("no NVIDIA driver answers: %s", exc)
        return "", []
    try:
        driver = _decode(pynvml.nvmlSystemGetDriverVersion())
        gpus: list[dict[str, Any]] = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            mig_mode = list(_mig_mode(pynvml, handle))
            gpu: dict[str, Any] = {
                "index": index,
                "uuid": _decode(pynvml.nvmlDeviceGetUUID(handle)),
                "name": _decode(pynvml.nvmlDeviceGetName(handle)),
                "memory_total": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                "mig_mode": mig_mode,
            }
            gpus.append(gpu)
            if mig_mode[0] == 1:
                gpus.extend(_mig_instances(pynvml, handle, gpu))
        return driver, gpus
    finally:
        pynvml.nvmlShutdown()


def _mig_mode(pynvml: Any, handle: Any) -> tuple[int, int]:
    try:
        current, pending = pynvml.nvmlDeviceGetMigMode(handle)
    except pynvml.NVMLError:
        return 0, 0
    return int(current), int(pending)


def _mig_instances(pynvml: Any, handle: Any, parent: dict[str, Any]) -> list[dict[str, Any]]:
    instances = []
    for mig_index in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, mig_index)
        except pynvml.NVMLError:
            continue
        instances.append(
            {
                "index": parent["index"],
                "uuid": _decode(pynvml.nvmlDeviceGetUUID(mig)),
                "name": _decode(pynvml.nvmlDeviceGetName(mig)),
                "memory_total": int(pynvml.nvmlDeviceGetMemoryInfo(mig).total),
                "parent_uuid": parent["uuid"],
            },
        )
    return instances


def gpus_from_nvml_json(data: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The same shape from a JSON capture of an NVML read (fixtures, support bundles)."""
    gpus = [
        {
            "index": int(g["index"]),
            "uuid": g["uuid"],
            "name": g["name"],
            "memory_total": int(g["memory_total"]),
            "mig_mode": list(g.get("mig_mode", [0, 0])),
        }
        for g in data["gpus"]
    ]
    return str(data.get("driver", "")), gpus


def gpus_from_nvidia_smi_xml(text: str) -> tuple[str, list[dict[str, Any]]]:
    """The same shape from ``nvidia-smi -q -x``, for hosts where only the tool is at hand."""
    root = ET.fromstring(text)  # noqa: S314 - trusted, see the import
    driver = root.findtext("driver_version", default="")
    gpus = []
    for index, node in enumerate(root.findall("gpu")):
        total = node.findtext("fb_memory_usage/total", default="0 MiB").split()[0]
        mig = node.findtext("mig_mode/current_mig", default="Disabled")
        gpus.append(
            {
                "index": int(node.findtext("minor_number", default=str(index))),
                "uuid": node.findtext("uuid", default=""),
                "name": node.findtext("product_name", default=""),
                "memory_total": int(total) * _MIB,
                "mig_mode": [1 if mig == "Enabled" else 0, 0],
            },
        )
    return driver, gpus


def gpus_of_this_host() -> tuple[str, list[dict[str, Any]]]:
    """The host's GPUs: from NVML, or, where LATTICE_AGENT_GPU_INVENTORY names a JSON capture
    of an NVML read (the format of ``gpus_from_nvml_json``), from that file instead. The host
    then claims exactly those GPUs, whatever NVML says: for test rigs, and hosts whose NVML
    the agent cannot read (docs/hosts.md)."""
    from django.conf import settings

    override = getattr(settings, "LATTICE_AGENT_GPU_INVENTORY", "")
    if override:
        return gpus_from_nvml_json(json.loads(Path(override).read_text()))
    return gpus_from_nvml()


def collect() -> dict[str, Any]:
    """Everything the control plane needs to know about this host, as plain data."""
    driver, gpus = gpus_of_this_host()
    return {
        "hostname": platform.node(),
        "cpu_count": psutil.cpu_count(logical=True) or 0,
        "memory_bytes": psutil.virtual_memory().total,
        "disk_bytes": psutil.disk_usage("/").total,
        "driver_version": driver,
        "gpus": gpus,
    }
