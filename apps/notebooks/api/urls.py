"""The notebooks API's routes, relative to the team prefix (/api/v1/teams/<team_slug>/).

config.api_urls includes ``team_urlpatterns`` once under that prefix, a notebook's dataset
mounts (notebooks/<id>/datasets/, apps.notebooks.api.mounts), its snapshots
(notebooks/<id>/snapshots/, apps.notebooks.api.snapshots) and the machine types they
may run on (machine-types/, apps.notebooks.api.machines) among them.
"""

from __future__ import annotations

from django.urls import path

from apps.notebooks.api import logs, machines, mounts, snapshots, views

_ONE = "notebooks/<int:notebook_id>/"

team_urlpatterns = [
    path("notebooks/", views.NotebookListView.as_view(), name="notebooks"),
    path(_ONE, views.NotebookDetailView.as_view(), name="notebook"),
    path(f"{_ONE}start/", views.NotebookStartView.as_view(), name="notebook_start"),
    path(f"{_ONE}stop/", views.NotebookStopView.as_view(), name="notebook_stop"),
    path(f"{_ONE}restart/", views.NotebookRestartView.as_view(), name="notebook_restart"),
    path(f"{_ONE}duplicate/", views.NotebookDuplicateView.as_view(), name="notebook_duplicate"),
    path(f"{_ONE}extend/", views.NotebookExtendView.as_view(), name="notebook_extend"),
    path(f"{_ONE}save-model/", views.NotebookSaveModelView.as_view(), name="notebook_save_model"),
    path(f"{_ONE}datasets/", mounts.MountListView.as_view(), name="notebook_datasets"),
    path(
        f"{_ONE}datasets/<int:mount_id>/",
        mounts.MountDetailView.as_view(),
        name="notebook_dataset",
    ),
    path(f"{_ONE}snapshots/", snapshots.SnapshotListView.as_view(), name="notebook_snapshots"),
    path(
        f"{_ONE}snapshots/<int:snapshot_id>/",
        snapshots.SnapshotDetailView.as_view(),
        name="notebook_snapshot",
    ),
    path(
        f"{_ONE}snapshots/<int:snapshot_id>/copy/",
        snapshots.SnapshotCopyView.as_view(),
        name="notebook_snapshot_copy",
    ),
    path(f"{_ONE}events/", views.NotebookEventListView.as_view(), name="notebook_events"),
    path(f"{_ONE}logs/", logs.NotebookLogsView.as_view(), name="notebook_logs"),
    path("machine-types/", machines.MachineTypeListView.as_view(), name="machine_types"),
]
