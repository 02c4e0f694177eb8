"""The datasets API: datasets and versions, resumable uploads, downloads.

Uploads: POST the version's manifest to ``.../datasets/<slug>/uploads/``; the
answer lists only the blobs to send, with the chunk indexes missing. PUT each
chunk's bytes to ``.../uploads/<id>/blobs/<sha256>/chunks/<n>/`` with its SHA-256
in ``X-Chunk-SHA256``, in any order, again if it failed. GET the upload to see
what is still missing (after a crash, say); POST ``.../complete/`` to make the
version. docs/datasets.md has a worked example.
"""

from __future__ import annotations

import logging
import tarfile
from typing import TYPE_CHECKING, Any, Protocol, cast

from django.http import FileResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.response import Response

from apps.accounts.api.throttling import UploadChunkThrottle
from apps.core.api.pagination import Cursor
from apps.core.api.parsers import ManifestJSONParser
from apps.datasets import paths, storage
from apps.datasets.api import serializers as s
from apps.datasets.hooks import upload_purposes
from apps.datasets.models import Dataset, DatasetVersion, Upload, VersionFile
from apps.datasets.services.completion import upload_cancel, upload_complete
from apps.datasets.services.datasets import dataset_create, dataset_delete, dataset_update
from apps.datasets.services.uploads import (
    chunk_receive,
    chunk_target,
    upload_missing,
    upload_start,
)
from apps.teams.api.base import TeamAPIView

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from django.db.models import QuerySet
    from rest_framework.request import Request
    from rest_framework.serializers import Serializer

    from apps.accounts.models import User
    from apps.datasets.models import Blob


logger = logging.getLogger(__name__)


def _user(request: Request) -> User:
    return cast("User", request.user)


@extend_schema(tags=["datasets"])
class _DatasetView(TeamAPIView):
    token_area: str | None = "datasets"
    team_permissions = {
        "GET": "datasets.view",
        "POST": "datasets.manage",
        "PUT": "datasets.manage",
        "PATCH": "datasets.manage",
        "DELETE": "datasets.manage",
    }
    serializer_class = s.DatasetSerializer

    def get_team_queryset(self) -> QuerySet[Any]:
        return Dataset.objects.select_related("team").prefetch_related("versions__author")

    def dataset(self, slug: str) -> Dataset:
        dataset = _DatasetView.get_team_queryset(self).filter(slug=slug).first()
        if dataset is None:
            raise exceptions.NotFound("No such dataset in this team.")
        return dataset

    def version(self, slug: str, number: int) -> DatasetVersion:
        version = (
            DatasetVersion.objects.filter(
                dataset__slug=slug, number=number, status=DatasetVersion.Status.READY
            )
            .select_related("dataset")
            .first()
        )
        if version is None:
            self.dataset(slug)  # says which of the two is missing
            raise exceptions.NotFound("No such version of this dataset.")
        return version

    def upload(self, upload_id: int) -> Upload:
        # A dataset's uploads only: another purpose's (a model's) has its own routes.
        upload = (
            Upload.objects.filter(pk=upload_id, purpose=Upload.DATASET)
            .select_related("dataset", "version")
            .first()
        )
        if upload is None:
            raise exceptions.NotFound("No such upload in this team.")
        return upload

    @staticmethod
    def validated(request: Request, serializer: type[Serializer[Any]]) -> dict[str, Any]:
        """The request's body as ``serializer`` reads it: a 400 naming each field it refuses."""
        data = serializer(data=request.data)
        data.is_valid(raise_exception=True)
        return data.validated_data

    def upload_body(self, upload: Upload) -> dict[str, Any]:
        return upload_body(upload)


class DatasetListView(mixins.ListModelMixin, _DatasetView):
    """The team's datasets; make one (its first upload makes version 1)."""

    pagination_class = Cursor

    def get(self, request: Request, team_slug: str) -> Response:
        return self.list(request)

    def post(self, request: Request, team_slug: str) -> Response:
        data = self.validated(request, s.DatasetSerializer)
        dataset = dataset_create(
            team=self.team,
            actor=_user(request),
            name=data["name"],
            description=data.get("description", ""),
            licence=data.get("licence", ""),
            visibility=data.get("visibility", Dataset.Visibility.PRIVATE),
        )
        return Response(s.DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailView(_DatasetView):
    """One dataset, with its ready versions; PATCH its name, description, licence or
    visibility; DELETE it (with ?confirm=<its name>)."""

    def get(self, request: Request, team_slug: str, slug: str) -> Response:
        return Response(s.DatasetSerializer(self.dataset(slug)).data)

    @extend_schema(request=s.DatasetUpdateSerializer, responses={200: s.DatasetSerializer})
    def patch(self, request: Request, team_slug: str, slug: str) -> Response:
        dataset = self.dataset(slug)
        data = self.validated(request, s.DatasetUpdateSerializer)
        dataset = dataset_update(team=self.team, actor=_user(request), dataset=dataset, **data)
        # Answered as GET answers it, at its slug now (a new name gives a new one).
        return Response(s.DatasetSerializer(self.dataset(dataset.slug)).data)

    def delete(self, request: Request, team_slug: str, slug: str) -> Response:
        dataset_delete(
            team=self.team,
            actor=_user(request),
            dataset=self.dataset(slug),
            confirmation=request.query_params.get("confirm", ""),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class _ByPath(Cursor):
    ordering = "path"
    max_page_size = 1000


class VersionFilesView(mixins.ListModelMixin, _DatasetView):
    """The files of one version, by path."""

    serializer_class = s.FileSerializer  # type: ignore[assignment]
    pagination_class = _ByPath

    def get_team_queryset(self) -> QuerySet[Any]:
        version = self.version(self.kwargs["slug"], self.kwargs["number"])
        return VersionFile.objects.filter(version=version).select_related("blob")

    def get(self, request: Request, team_slug: str, slug: str, number: int) -> Response:
        return self.list(request)


class UploadStartView(_DatasetView):
    """Start an upload of a new version: the answer lists only the blobs to send."""

    # A manifest of up to 100,000 files is ~10 MB: past Django's 2.5 MiB body limit.
    parser_classes = [ManifestJSONParser]
    serializer_class = s.UploadStartSerializer  # type: ignore[assignment]

    @extend_schema(request=s.UploadStartSerializer, responses={201: s.UploadSerializer})
    def post(self, request: Request, team_slug: str, slug: str) -> Response:
        data = self.validated(request, s.UploadStartSerializer)
        upload = upload_start(
            team=self.team,
            actor=_user(request),
            dataset=self.dataset(slug),
            files=data["files"],
            message=data.get("message", ""),
        )
        return Response(self.upload_body(upload), status=status.HTTP_201_CREATED)


class UploadDetailView(_DatasetView):
    """An upload and the chunks still missing: how a client resumes."""

    serializer_class = s.UploadSerializer  # type: ignore[assignment]

    def get(self, request: Request, team_slug: str, upload_id: int) -> Response:
        return Response(self.upload_body(self.upload(upload_id)))

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, team_slug: str, upload_id: int) -> Response:
        """Abandon an open upload: what it received is discarded (409 once complete)."""
        upload_cancel(team=self.team, actor=_user(request), upload=self.upload(upload_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChunkView(_DatasetView):
    """PUT one chunk's bytes (application/octet-stream), its SHA-256 in X-Chunk-SHA256."""

    throttle_classes = [UploadChunkThrottle]
    # DRF's OPTIONS describes a PUT by looking the object up: there is none to look up.
    metadata_class = None

    @extend_schema(request={"application/octet-stream": OpenApiTypes.BINARY}, responses={204: None})
    def put(
        self, request: Request, team_slug: str, upload_id: int, sha256: str, index: int
    ) -> Response:
        length = request.META.get("CONTENT_LENGTH") or ""
        if not (length.isascii() and length.isdigit()):
            raise exceptions.ValidationError(["Send the chunk with a Content-Length."])
        chunk_receive(
            team=self.team,
            actor=_user(request),
            upload=self.upload(upload_id),
            sha256=sha256,
            index=index,
            # The raw body, a piece at a time: never parsed, never whole in memory.
            pieces=storage.request_pieces(request._request, int(length)),
            checksum=request.headers.get("X-Chunk-SHA256", "").lower(),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ChunkTargetView(_DatasetView):
    """Where to PUT a chunk: a presigned S3 URL (with the header to send), or Lattice."""

    throttle_classes = [UploadChunkThrottle]

    serializer_class = s.ChunkTargetRequestSerializer  # type: ignore[assignment]

    @extend_schema(request=s.ChunkTargetRequestSerializer, responses={200: s.ChunkTargetSerializer})
    def post(
        self, request: Request, team_slug: str, upload_id: int, sha256: str, index: int
    ) -> Response:
        data = self.validated(request, s.ChunkTargetRequestSerializer)
        target = chunk_target(
            team=self.team,
            actor=_user(request),
            upload=self.upload(upload_id),
            sha256=sha256,
            index=index,
            checksum=data["sha256"].lower(),
        )
        if target["url"].startswith("/"):
            target["url"] = request.build_absolute_uri(target["url"])
        return Response(target)


class UploadCompleteView(_DatasetView):
    """Check everything and make the version ready."""

    serializer_class = s.VersionSerializer  # type: ignore[assignment]

    @extend_schema(request=s.UploadCompleteRequestSerializer, responses={201: s.VersionSerializer})
    def post(self, request: Request, team_slug: str, upload_id: int) -> Response:
        data = self.validated(request, s.UploadCompleteRequestSerializer)
        version = upload_complete(
            team=self.team,
            actor=_user(request),
            upload=self.upload(upload_id),
            allow_identical=data["allow_identical"],
        )
        return Response(self.made_body(version), status=status.HTTP_201_CREATED)

    def made_body(self, version: Any) -> dict[str, Any]:
        """The answer for what completing the upload made (a dataset version here)."""
        return s.VersionSerializer(version).data


class FileDownloadView(_DatasetView):
    """One file of a version, streamed."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(
        self, request: Request, team_slug: str, slug: str, number: int, path: str
    ) -> FileResponse:
        version = self.version(slug, number)
        row = get_object_or_404(
            VersionFile.objects.select_related("blob"), version=version, path=path
        )
        return file_response(row)


class ArchiveView(_DatasetView):
    """A whole version as a tar stream, made as it is sent."""

    @extend_schema(responses={(200, "application/x-tar"): OpenApiTypes.BINARY})
    def get(
        self, request: Request, team_slug: str, slug: str, number: int
    ) -> StreamingHttpResponse:
        version = self.version(slug, number)
        return archive_response(
            f"{version.dataset.slug}-v{version.number}",
            VersionFile.objects.filter(version=version).select_related("blob"),
        )


def upload_body(upload: Upload) -> dict[str, Any]:
    """An upload as its answers show it: what it makes, and the chunks still missing."""
    missing = upload_missing(upload)
    blobs = upload.blobs.all()
    # What it makes: a dataset's version, or what its purpose says (a model's).
    purpose = upload_purposes.get(upload.purpose)
    made = (
        purpose.describe(upload)
        if purpose is not None
        else {
            "dataset": upload.dataset.slug if upload.dataset else None,
            "version": upload.version.number if upload.version else None,
        }
    )
    return {
        "id": upload.pk,
        **made,
        "status": upload.status,
        "chunk_size": upload.chunk_size,
        "new_bytes": upload.new_bytes,
        # True: ask each chunk's target and PUT it straight to storage (S3).
        "direct": any(b.multipart_id for b in blobs),
        "blobs": [
            {
                "sha256": b.sha256,
                "size": b.size,
                "chunk_count": b.chunk_count,
                "missing": missing.get(b.sha256, []),
            }
            for b in blobs
        ],
    }


class StoredFile(Protocol):
    """A path of a version's manifest and the blob holding its bytes: a dataset version's
    row (VersionFile) or another version's in the same blob store (a model's)."""

    path: str
    version_id: int

    @property
    def blob(self) -> Blob: ...


def file_response(row: StoredFile) -> FileResponse:
    """One file of a version, streamed from storage as a download."""
    return FileResponse(
        storage.default_storage.open(row.blob.storage_key, "rb"),
        as_attachment=True,
        filename=row.path.rsplit("/", 1)[-1],
    )


def archive_response(name: str, files: Iterable[StoredFile]) -> StreamingHttpResponse:
    """A whole version as a tar, made as it is sent: memory stays flat. ``name`` is the
    archive's file name and its one folder ("<slug>-v<number>")."""
    response = StreamingHttpResponse(_tar(name, list(files)), content_type="application/x-tar")
    response["Content-Disposition"] = f'attachment; filename="{name}.tar"'
    return response


def _tar(folder: str, files: list[StoredFile]) -> Iterator[bytes]:
    """Each file as a regular file under ``folder``. Its header takes the stored blob's size,
    never the manifest's: one that said less would make the rest of the file's bytes read as
    entries of the archive (anyone's, named anything, links included)."""
    for row in files:
        if not paths.stays_inside(row.path):
            # No upload can list such a path (paths.clean_path): a row written some other way.
            logger.warning("version %s: %r left out of its archive", row.version_id, row.path)
            continue
        info = tarfile.TarInfo(f"{folder}/{row.path}")
        info.type = tarfile.REGTYPE
        info.size = row.blob.size
        info.mode = 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        yield from _exactly(row.blob.storage_key, info.size)
        padding = (-info.size) % tarfile.BLOCKSIZE
        if padding:
            yield b"\0" * padding
    yield b"\0" * (tarfile.BLOCKSIZE * 2)


def _exactly(key: str, size: int) -> Iterator[bytes]:
    """The stored bytes at ``key``, which must be ``size`` of them: if storage holds more or
    fewer, the archive stops there (the download fails) rather than go on misaligned."""
    sent = 0
    for piece in storage.open_pieces(key):
        sent += len(piece)
        if sent > size:
            break
        yield piece
    if sent != size:
        logger.error("%s holds %s bytes, not %s: archive cut short", key, sent, size)
        raise storage.SizeError(f"{key} is not {size} bytes")
