"""The routes of a run's kept files on Lattice's origin (apps.jobs.files_views)."""

from __future__ import annotations

from django.urls import path

from apps.jobs import files_views

app_name = "job_files"

_RUN = "t/<slug:team_slug>/jobs/runs/<int:run_id>/"

urlpatterns = [
    path(f"{_RUN}files/<int:file_id>/", files_views.RunFileView.as_view(), name="download"),
    path(f"{_RUN}notebook/", files_views.RunNotebookView.as_view(), name="notebook"),
]
