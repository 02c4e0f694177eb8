"""Model pages: /t/<team_slug>/models/..."""

from __future__ import annotations

from django.urls import path

from apps.models import views

app_name = "models"

_ONE = "t/<slug:team_slug>/models/<slug:model_slug>/"
_VERSION = f"{_ONE}v/<int:number>/"

urlpatterns = [
    path("t/<slug:team_slug>/models/", views.ModelListView.as_view(), name="list"),
    path(_ONE, views.ModelDetailView.as_view(), name="detail"),
    path(f"{_ONE}edit/", views.ModelUpdateView.as_view(), name="edit"),
    path(f"{_ONE}delete/", views.ModelDeleteView.as_view(), name="delete"),
    path(f"{_ONE}aliases/", views.AliasSetView.as_view(), name="alias_set"),
    path(f"{_ONE}aliases/remove/", views.AliasRemoveView.as_view(), name="alias_remove"),
    path(f"{_ONE}upload/", views.ModelUploadView.as_view(), name="upload"),
    path(f"{_ONE}diff/", views.DiffView.as_view(), name="diff"),
    path(_VERSION, views.VersionView.as_view(), name="version"),
    # An alias or "latest" in a page's address: redirected to the version's number.
    path(f"{_ONE}v/<str:ref>/", views.VersionRefView.as_view(), name="version_ref"),
    path(f"{_VERSION}files/<path:path>", views.FileView.as_view(), name="file"),
    path(f"{_VERSION}archive/", views.ArchiveView.as_view(), name="archive"),
]
