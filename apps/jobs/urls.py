"""Job pages: /t/<team_slug>/jobs/..."""

from __future__ import annotations

from django.urls import path

from apps.jobs import views

app_name = "jobs"

_ONE = "t/<slug:team_slug>/jobs/<int:job_id>/"
_RUN = f"{_ONE}runs/<int:number>/"

urlpatterns = [
    path("t/<slug:team_slug>/jobs/", views.JobListView.as_view(), name="list"),
    path("t/<slug:team_slug>/jobs/new/", views.JobCreateView.as_view(), name="create"),
    path(_ONE, views.JobDetailView.as_view(), name="detail"),
    path(f"{_ONE}edit/", views.JobEditView.as_view(), name="edit"),
    path(f"{_ONE}run/", views.JobRunView.as_view(), name="run_start"),
    path(f"{_ONE}delete/", views.JobDeleteView.as_view(), name="delete"),
    path(_RUN, views.RunDetailView.as_view(), name="run"),
    path(f"{_RUN}cancel/", views.RunCancelView.as_view(), name="run_cancel"),
    path(f"{_RUN}rerun/", views.RunRerunView.as_view(), name="run_rerun"),
]
