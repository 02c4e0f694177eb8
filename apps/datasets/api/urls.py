"""The datasets API's routes.

``urlpatterns`` is the public catalogue (/api/v1/datasets/..., every team's public
datasets, to anyone signed in); ``team_urlpatterns`` are a team's own datasets and its
resumable uploads, relative to the team prefix that config.api_urls writes once
(/api/v1/teams/<team_slug>/). A notebook's dataset mounts are the notebooks app's routes.
"""

from __future__ import annotations

from django.urls import path

from apps.datasets.api import catalogue, views

_ONE = "datasets/<slug:slug>/"
_VERSION = f"{_ONE}versions/<int:number>/"
_UPLOAD = "uploads/<int:upload_id>/"
_CHUNK = f"{_UPLOAD}blobs/<str:sha256>/chunks/<int:index>/"
_CATALOGUE_ONE = "datasets/<slug:team_slug>/<slug:slug>/"
_CATALOGUE_VERSION = f"{_CATALOGUE_ONE}versions/<int:number>/"

urlpatterns = [
    path("datasets/", catalogue.CatalogueListView.as_view(), name="catalogue"),
    path(_CATALOGUE_ONE, catalogue.CatalogueDatasetView.as_view(), name="catalogue_dataset"),
    path(
        f"{_CATALOGUE_VERSION}files/",
        catalogue.CatalogueFilesView.as_view(),
        name="catalogue_files",
    ),
    path(
        f"{_CATALOGUE_VERSION}files/<path:path>",
        catalogue.CatalogueFileView.as_view(),
        name="catalogue_file",
    ),
    path(
        f"{_CATALOGUE_VERSION}archive/",
        catalogue.CatalogueArchiveView.as_view(),
        name="catalogue_archive",
    ),
]

team_urlpatterns = [
    path("datasets/", views.DatasetListView.as_view(), name="datasets"),
    path(_ONE, views.DatasetDetailView.as_view(), name="dataset"),
    path(f"{_VERSION}files/", views.VersionFilesView.as_view(), name="dataset_files"),
    path(f"{_VERSION}files/<path:path>", views.FileDownloadView.as_view(), name="dataset_file"),
    path(f"{_VERSION}archive/", views.ArchiveView.as_view(), name="dataset_archive"),
    path(f"{_ONE}uploads/", views.UploadStartView.as_view(), name="dataset_uploads"),
    path(_UPLOAD, views.UploadDetailView.as_view(), name="upload"),
    path(_CHUNK, views.ChunkView.as_view(), name="upload_chunk"),
    path(f"{_CHUNK}target/", views.ChunkTargetView.as_view(), name="upload_chunk_target"),
    path(f"{_UPLOAD}complete/", views.UploadCompleteView.as_view(), name="upload_complete"),
]
