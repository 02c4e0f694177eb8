"""The public dataset catalogue's pages (in no team: /datasets/...)."""

from __future__ import annotations

from django.urls import path

from apps.datasets import catalogue_views

app_name = "catalogue"

urlpatterns = [
    path("datasets/", catalogue_views.CatalogueView.as_view(), name="index"),
    path(
        "datasets/<slug:team_slug>/<slug:slug>/",
        catalogue_views.CatalogueDetailView.as_view(),
        name="detail",
    ),
]
