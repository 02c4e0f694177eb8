"""The jobs API's routes, relative to the team prefix (/api/v1/teams/<team_slug>/)."""

from __future__ import annotations

from django.urls import path

from apps.jobs.api import views

_ONE = "jobs/<int:job_id>/"
_RUN = f"{_ONE}runs/<int:number>/"

team_urlpatterns = [
    path("jobs/", views.JobListView.as_view(), name="jobs"),
    path(_ONE, views.JobDetailView.as_view(), name="job"),
    path(f"{_ONE}run/", views.JobStartView.as_view(), name="job_start"),
    path(f"{_ONE}runs/", views.JobRunListView.as_view(), name="job_runs"),
    path(_RUN, views.JobRunDetailView.as_view(), name="job_run"),
    path(f"{_RUN}cancel/", views.JobRunCancelView.as_view(), name="job_run_cancel"),
    path(f"{_RUN}rerun/", views.JobRunRerunView.as_view(), name="job_run_rerun"),
    path(f"{_RUN}logs/", views.JobRunLogsView.as_view(), name="job_run_logs"),
]
