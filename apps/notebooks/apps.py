from __future__ import annotations

from django.apps import AppConfig


class NotebooksConfig(AppConfig):
    name = "apps.notebooks"
    label = "notebooks"
    verbose_name = "Notebooks"

    def ready(self) -> None:
        # What notebooks plug into the apps below them (apps.core.hooks).
        from apps.datasets import hooks as datasets
        from apps.machines.hooks import WorkloadKind, workload_kinds
        from apps.notebooks import lifecycle, mounts, selectors
        from apps.teams.hooks import overview_notebooks

        # A session's workload is "nb-<notebook>-s<session>": its events and its output.
        workload_kinds.register(
            "nb",
            WorkloadKind(
                on_event=lifecycle.on_workload_event,
                stream=lifecycle.workload_stream,
                placed=lifecycle.on_workload_placed,
            ),
        )
        # Notebooks mount dataset versions: the catalogue offers them, and a dataset made
        # private leaves other teams' notebooks.
        datasets.attach_targets.register(mounts.attach_targets)
        datasets.dataset_made_private.register(mounts.others_mounts_remove)
        # The team's overview page lists its notebooks.
        overview_notebooks.register(selectors.overview_notebooks)
