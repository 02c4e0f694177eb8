"""The models API's routes: ``team_urlpatterns``, relative to the team prefix that
config.api_urls writes once (/api/v1/teams/<team_slug>/). A version is named by its
number, an alias, or "latest" (``ref``)."""

from __future__ import annotations

from django.urls import path

from apps.models.api import views

_ONE = "models/<slug:slug>/"
_VERSION = f"{_ONE}versions/<str:ref>/"
_UPLOAD = "model-uploads/<int:upload_id>/"
_CHUNK = f"{_UPLOAD}blobs/<str:sha256>/chunks/<int:index>/"

team_urlpatterns = [
    path("models/", views.ModelListView.as_view(), name="models"),
    path(_ONE, views.ModelDetailView.as_view(), name="model"),
    path(f"{_ONE}versions/", views.VersionListView.as_view(), name="model_versions"),
    path(_VERSION, views.VersionDetailView.as_view(), name="model_version"),
    path(f"{_VERSION}files/", views.VersionFilesView.as_view(), name="model_files"),
    path(f"{_VERSION}files/<path:path>", views.FileDownloadView.as_view(), name="model_file"),
    path(f"{_VERSION}archive/", views.ArchiveView.as_view(), name="model_archive"),
    path(f"{_ONE}diff/<str:old>/<str:new>/", views.DiffView.as_view(), name="model_diff"),
    path(f"{_ONE}aliases/<slug:name>/", views.AliasView.as_view(), name="model_alias"),
    path(_UPLOAD, views.ModelUploadDetailView.as_view(), name="model_upload"),
    path(_CHUNK, views.ModelChunkView.as_view(), name="model_upload_chunk"),
    path(
        f"{_CHUNK}target/", views.ModelChunkTargetView.as_view(), name="model_upload_chunk_target"
    ),
    path(
        f"{_UPLOAD}complete/",
        views.ModelUploadCompleteView.as_view(),
        name="model_upload_complete",
    ),
]
