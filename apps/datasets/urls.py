"""Dataset pages: /t/<team_slug>/datasets/..."""

from __future__ import annotations

from django.urls import path

from apps.datasets import views

app_name = "datasets"

_ONE = "t/<slug:team_slug>/datasets/<slug:slug>/"

urlpatterns = [
    path("t/<slug:team_slug>/datasets/", views.DatasetListView.as_view(), name="list"),
    path(_ONE, views.DatasetDetailView.as_view(), name="detail"),
    path(f"{_ONE}edit/", views.DatasetUpdateView.as_view(), name="edit"),
    path(f"{_ONE}delete/", views.DatasetDeleteView.as_view(), name="delete"),
    path(f"{_ONE}upload/", views.DatasetUploadView.as_view(), name="upload"),
]
