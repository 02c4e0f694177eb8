from __future__ import annotations

from django.apps import AppConfig

# The audit log's words for what notebooks record (apps.core.audit.audit_describe).
AUDIT_PHRASES = {
    "notebook.created": "{actor} created the notebook {target}",
    "notebook.updated": "{actor} changed the notebook {target}",
    "notebook.started": "{actor} started the notebook {target}",
    "notebook.stopped": "{actor} stopped the notebook {target}",
    "notebook.restarted": "{actor} restarted the notebook {target}",
    "notebook.duplicated": "{actor} copied the notebook {source} as {target}",
    "notebook.deleted": "{actor} deleted the notebook {target}",
    "notebook.moved": "{actor} moved the notebook {target} off the draining host {host}",
    "notebook.settings_changed": "{actor} changed the team's notebook settings",
    "notebook.dataset_mounted": "{actor} attached {dataset} v{version} to {target} at {path}",
    "notebook.dataset_unmounted": "{actor} detached {dataset} v{version} from {target}",
    "notebook.snapshot_taken": "{actor} took a snapshot of the notebook {target}",
    "notebook.snapshot_copied": (
        "{actor} restored a snapshot of {source} into the notebook {target}"
    ),
}


class NotebooksConfig(AppConfig):
    name = "apps.notebooks"
    label = "notebooks"
    verbose_name = "Notebooks"

    def ready(self) -> None:
        from django.urls import reverse

        from apps.accounts.hooks import example_urls
        from apps.core.audit import audit_phrases

        # What notebooks plug into the apps below them (apps.core.hooks).
        from apps.datasets import hooks as datasets
        from apps.machines.hooks import (
            WorkloadKind,
            host_draining,
            host_move_now,
            host_offline,
            host_only_copies,
            workload_kinds,
        )
        from apps.models.hooks import SaveSource, save_sources, source_links
        from apps.notebooks import lifecycle, mounts, saves, selectors, services, snapshots, volumes
        from apps.teams.hooks import overview_notebooks, running_notebooks

        # A session's workload is "nb-<notebook>-s<session>": its events and its output.
        workload_kinds.register(
            "nb",
            WorkloadKind(
                on_event=lifecycle.on_workload_event,
                stream=lifecycle.workload_stream,
                placed=lifecycle.on_workload_placed,
            ),
        )
        # Storage follows its notebook: a start that waited for its files' snapshot goes on
        # when it ends; a drained host's notebooks hear of it, and move at once when an admin
        # asks; a host holding a notebook's only copy of its files is not removed.
        snapshots.snapshot_ended.register(volumes.on_snapshot_ended)
        volumes.files_ready.register(lifecycle.session_dispatch)
        host_draining.register(volumes.drain_notice)
        host_move_now.register(services.notebooks_move_off)
        host_only_copies.register(volumes.only_copies)
        host_offline.register(snapshots.snapshots_host_offline)
        # Notebooks mount dataset versions: the catalogue offers them, and a dataset made
        # private leaves other teams' notebooks.
        datasets.attach_targets.register(mounts.attach_targets)
        datasets.dataset_made_private.register(mounts.others_mounts_remove)
        # A model version saved from a notebook links back to it.
        source_links.register("notebook", saves.version_source)
        # A snapshot's save (apps.models.services.saves, source "snapshot"): its files kept
        # and held, its end.
        save_sources.register(
            snapshots.SOURCE,
            SaveSource(
                saved=snapshots.files_kept,
                held=snapshots.files_held,
                ended=snapshots.ticket_ended,
            ),
        )
        # The team's overview page lists its notebooks.
        overview_notebooks.register(selectors.overview_notebooks)
        # The dashboard lists what runs across a person's teams.
        running_notebooks.register(selectors.running_notebooks)
        # A new token of the notebooks area is shown a curl of its team's notebooks.
        example_urls.register(
            "notebooks",
            lambda team: reverse("api:notebooks", args=[team.slug]) if team else None,
        )
        # The audit log says what this app records in words.
        for action, phrase in AUDIT_PHRASES.items():
            audit_phrases.register(action, phrase)
