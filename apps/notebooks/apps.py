from __future__ import annotations

from django.apps import AppConfig


class NotebooksConfig(AppConfig):
    name = "apps.notebooks"
    label = "notebooks"
    verbose_name = "Notebooks"

    def ready(self) -> None:
        # What notebooks plug into the apps below them (apps.core.hooks).
        from apps.machines.hooks import WorkloadKind, workload_kinds
        from apps.notebooks import lifecycle

        # A session's workload is "nb-<notebook>-s<session>": its events and its output.
        workload_kinds.register(
            "nb",
            WorkloadKind(on_event=lifecycle.on_workload_event, stream=lifecycle.workload_stream),
        )
