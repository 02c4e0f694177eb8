from __future__ import annotations

from django.apps import AppConfig


class MachinesConfig(AppConfig):
    name = "apps.machines"
    label = "machines"
    verbose_name = "Machines"

    def ready(self) -> None:
        # Warm pool slots are workloads of kind "pool" (apps.machines.pool).
        from apps.machines.hooks import WorkloadKind, workload_kinds
        from apps.machines.pool import POOL_KIND, pool_event, pool_stream

        workload_kinds.register(POOL_KIND, WorkloadKind(on_event=pool_event, stream=pool_stream))
