"""Notebook pages: /t/<team_slug>/notebooks/..."""

from __future__ import annotations

from django.urls import path

from apps.notebooks.views import actions, mounts, notebooks, saves, snapshots, team_settings

app_name = "notebooks"

_ONE = "t/<slug:team_slug>/notebooks/<int:notebook_id>/"

urlpatterns = [
    path("t/<slug:team_slug>/notebooks/", notebooks.NotebookListView.as_view(), name="list"),
    path(
        "t/<slug:team_slug>/notebooks/new/", notebooks.NotebookCreateView.as_view(), name="create"
    ),
    path(
        "t/<slug:team_slug>/notebooks/settings/",
        team_settings.TeamNotebookSettingsView.as_view(),
        name="settings",
    ),
    path(_ONE, notebooks.NotebookDetailView.as_view(), name="detail"),
    path(f"{_ONE}start/", actions.NotebookStartView.as_view(), name="start"),
    path(f"{_ONE}stop/", actions.NotebookStopView.as_view(), name="stop"),
    path(f"{_ONE}restart/", actions.NotebookRestartView.as_view(), name="restart"),
    path(f"{_ONE}extend/", actions.NotebookExtendView.as_view(), name="extend"),
    path(f"{_ONE}update/", actions.NotebookUpdateView.as_view(), name="update"),
    path(f"{_ONE}duplicate/", actions.NotebookDuplicateView.as_view(), name="duplicate"),
    path(f"{_ONE}delete/", actions.NotebookDeleteView.as_view(), name="delete"),
    path(f"{_ONE}datasets/", mounts.NotebookDatasetAttachView.as_view(), name="dataset_attach"),
    path(f"{_ONE}save-model/", saves.NotebookSaveModelView.as_view(), name="save_model"),
    path(f"{_ONE}saves/", saves.NotebookSavesView.as_view(), name="saves"),
    path(f"{_ONE}snapshots/", snapshots.NotebookSnapshotsView.as_view(), name="snapshots"),
    path(
        f"{_ONE}snapshots/take/",
        snapshots.NotebookSnapshotTakeView.as_view(),
        name="snapshot_take",
    ),
    path(
        f"{_ONE}snapshots/<int:snapshot_id>/copy/",
        snapshots.NotebookSnapshotCopyView.as_view(),
        name="snapshot_copy",
    ),
    path(
        f"{_ONE}datasets/<int:mount_id>/remove/",
        mounts.NotebookDatasetDetachView.as_view(),
        name="dataset_detach",
    ),
]
