"""Notebook pages: /t/<team_slug>/notebooks/..."""

from __future__ import annotations

from django.urls import path

from apps.notebooks import views

app_name = "notebooks"

_ONE = "t/<slug:team_slug>/notebooks/<int:notebook_id>/"

urlpatterns = [
    path("t/<slug:team_slug>/notebooks/", views.NotebookListView.as_view(), name="list"),
    path("t/<slug:team_slug>/notebooks/new/", views.NotebookCreateView.as_view(), name="create"),
    path(
        "t/<slug:team_slug>/notebooks/settings/",
        views.TeamNotebookSettingsView.as_view(),
        name="settings",
    ),
    path(_ONE, views.NotebookDetailView.as_view(), name="detail"),
    path(f"{_ONE}start/", views.NotebookStartView.as_view(), name="start"),
    path(f"{_ONE}stop/", views.NotebookStopView.as_view(), name="stop"),
    path(f"{_ONE}restart/", views.NotebookRestartView.as_view(), name="restart"),
    path(f"{_ONE}extend/", views.NotebookExtendView.as_view(), name="extend"),
    path(f"{_ONE}update/", views.NotebookUpdateView.as_view(), name="update"),
    path(f"{_ONE}duplicate/", views.NotebookDuplicateView.as_view(), name="duplicate"),
    path(f"{_ONE}delete/", views.NotebookDeleteView.as_view(), name="delete"),
    path(f"{_ONE}datasets/", views.NotebookDatasetAttachView.as_view(), name="dataset_attach"),
    path(
        f"{_ONE}datasets/<int:mount_id>/remove/",
        views.NotebookDatasetDetachView.as_view(),
        name="dataset_detach",
    ),
]
