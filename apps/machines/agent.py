"""The host agent: tasks that run on a host, from its own queue ``host.<name>``.

The agent holds no database credentials: a GPU host runs strangers' code.
It touches only the local runtime (Docker or processes) and the broker; what
it learns goes back as tasks on the control queue (apps.machines.tasks).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from celery import shared_task

from apps.machines.inventory import collect
from apps.runtimes.base import Spec
from apps.runtimes.select import host_runtime

AGENT_TIME_LIMIT = 600


def host_queue(name: str) -> str:
    return f"host.{name}"


def managed_report() -> list[dict[str, Any]]:
    return [
        {"name": m.name, "running": m.running, "labels": m.labels}
        for m in host_runtime().list_managed()
    ]


@shared_task(name="agent.report", soft_time_limit=60, time_limit=90)
def agent_report(host_name: str) -> None:
    """Send inventory and the workloads running here to the control plane."""
    from apps.machines.tasks import host_reported

    collected_at = time.time()
    host_reported.delay(host_name, collect(), managed_report(), collected_at)


@shared_task(name="agent.start", soft_time_limit=AGENT_TIME_LIMIT - 30, time_limit=AGENT_TIME_LIMIT)
def agent_start(host_name: str, spec: dict[str, Any]) -> None:
    """Start a workload (idempotent) and say how it went."""
    from apps.machines.tasks import workload_failed, workload_started
    from apps.runtimes.base import WorkloadError

    runtime = host_runtime()
    try:
        state = runtime.start(Spec(**spec))
    except WorkloadError as exc:
        workload_failed.delay(host_name, spec["name"], str(exc))
        return
    workload_started.delay(host_name, spec["name"], state)


@shared_task(name="agent.stop", soft_time_limit=90, time_limit=120)
def agent_stop(host_name: str, name: str, state: dict[str, Any] | None = None) -> None:
    """Stop a workload (idempotent); its volumes stay."""
    host_runtime().stop(state or {"name": name})


@shared_task(name="agent.remove_orphan", soft_time_limit=60, time_limit=90)
def agent_remove_orphan(host_name: str, name: str) -> None:
    """Remove a workload the control plane does not know, found by its labels."""
    runtime = host_runtime()
    for managed in runtime.list_managed():
        if managed.name == name:
            runtime.stop(managed.state, timeout=10)
            remove = getattr(runtime, "remove_orphan", None)
            if remove is not None:
                remove(managed)


def spec_to_task(spec: Spec) -> dict[str, Any]:
    return asdict(spec)
