"""The models API: models, their immutable versions, aliases, downloads and diffs.

A new version: POST its manifest (and format, metadata, lineage) to
``.../models/<slug>/versions/``. The very files of a ready version of the model answer
200 with that version (``existing``); otherwise 201 with an upload that lists only the
blobs to send, and the datasets' resumable protocol follows (docs/datasets.md) at
``.../model-uploads/<id>/``: PUT chunks, POST ``complete/``, which answers the version.
The upload views are datasets' own (apps.datasets.api.views), narrowed here to the
team's model uploads and to models' permissions and token scope.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status
from rest_framework.response import Response

from apps.core.api.pagination import Cursor
from apps.core.api.parsers import ManifestJSONParser
from apps.datasets import catalogue
from apps.datasets.api.views import (
    ChunkTargetView,
    ChunkView,
    UploadCompleteView,
    UploadDetailView,
    _ByPath,
    archive_response,
    file_response,
    upload_body,
)
from apps.datasets.models import DatasetVersion, Upload
from apps.models.api import serializers as s
from apps.models.hooks import source_link, version_servers
from apps.models.models import Model, ModelAlias, ModelFile, ModelVersion, ModelVersionDataset
from apps.models.selectors import (
    lineage_links,
    manifest_diff,
    models_listed,
    version_children,
    version_named,
)
from apps.models.services.aliases import alias_delete, alias_set
from apps.models.services.registry import model_create, model_delete, model_update
from apps.models.services.versions import PURPOSE, version_start
from apps.teams.api.base import TeamAPIView

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import FileResponse, StreamingHttpResponse
    from rest_framework.request import Request
    from rest_framework.serializers import Serializer

    from apps.accounts.models import User

PERMISSIONS = {
    "GET": "models.view",
    "POST": "models.manage",
    "PUT": "models.manage",
    "PATCH": "models.manage",
    "DELETE": "models.manage",
}


def _user(request: Request) -> User:
    return cast("User", request.user)


def _validated(request: Request, serializer: type[Serializer[Any]]) -> dict[str, Any]:
    data = serializer(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data


def _refused(field: str, message: str) -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [message]})


@extend_schema(tags=["models"])
class _ModelView(TeamAPIView):
    token_area = "models"
    team_permissions = PERMISSIONS
    serializer_class = s.ModelSerializer

    def get_team_queryset(self) -> QuerySet[Any]:
        return models_listed(self.team).select_related("team")

    def model(self, slug: str) -> Model:
        model = _ModelView.get_team_queryset(self).filter(slug=slug).first()
        if model is None:
            raise exceptions.NotFound("No such model in this team.")
        return model

    def version(self, model: Model, ref: str) -> ModelVersion:
        """A ready version of ``model`` by number, alias or "latest"."""
        version = version_named(self.team, model, ref)
        if version is None:
            raise exceptions.NotFound(f"{model.name} has no version {ref}.")
        return version


class ModelListView(mixins.ListModelMixin, _ModelView):
    """The team's models, each with its newest version's number and its aliases; make one
    (its first upload makes version 1)."""

    pagination_class = Cursor

    def get(self, request: Request, team_slug: str) -> Response:
        return self.list(request)

    def post(self, request: Request, team_slug: str) -> Response:
        data = _validated(request, s.ModelSerializer)
        model = model_create(
            team=self.team,
            actor=_user(request),
            name=data["name"],
            description=data.get("description", ""),
            licence=data.get("licence", ""),
        )
        return Response(
            s.ModelSerializer(self.model(model.slug)).data, status=status.HTTP_201_CREATED
        )


class ModelDetailView(_ModelView):
    """One model; PATCH its name, description or licence; DELETE it with its versions and
    aliases (with ?confirm=<its name>)."""

    def get(self, request: Request, team_slug: str, slug: str) -> Response:
        return Response(s.ModelSerializer(self.model(slug)).data)

    @extend_schema(request=s.ModelUpdateSerializer, responses={200: s.ModelSerializer})
    def patch(self, request: Request, team_slug: str, slug: str) -> Response:
        model = self.model(slug)
        data = _validated(request, s.ModelUpdateSerializer)
        model = model_update(team=self.team, actor=_user(request), model=model, **data)
        # Answered as GET answers it, at its slug now (a new name gives a new one).
        return Response(s.ModelSerializer(self.model(model.slug)).data)

    def delete(self, request: Request, team_slug: str, slug: str) -> Response:
        model_delete(
            team=self.team,
            actor=_user(request),
            model=self.model(slug),
            confirmation=request.query_params.get("confirm", ""),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class VersionListView(mixins.ListModelMixin, _ModelView):
    """The model's versions, newest first (one still uploading has no number yet); POST a
    manifest to make a new one."""

    # A manifest of up to 100,000 files is ~10 MB: past Django's 2.5 MiB body limit.
    parser_classes = [ManifestJSONParser]
    serializer_class = s.ModelVersionSerializer  # type: ignore[assignment]
    pagination_class = Cursor

    def get_team_queryset(self) -> QuerySet[Any]:
        model = self.model(self.kwargs["slug"])
        return (
            ModelVersion.objects.filter(model=model)
            .select_related("created_by")
            .prefetch_related("aliases")
        )

    def get(self, request: Request, team_slug: str, slug: str) -> Response:
        return self.list(request)

    @extend_schema(
        request=s.ModelVersionStartSerializer,
        responses={200: s.ExistingModelVersionSerializer, 201: s.ModelUploadSerializer},
    )
    def post(self, request: Request, team_slug: str, slug: str) -> Response:
        model = self.model(slug)
        data = _validated(request, s.ModelVersionStartSerializer)
        version, upload = version_start(
            team=self.team,
            actor=_user(request),
            model=model,
            files=data["files"],
            message=data.get("message", ""),
            format=data["format"],
            metadata=data.get("metadata"),
            io_schema=data.get("io_schema"),
            dataset_versions=[self.dataset_version(ref) for ref in data["dataset_versions"]],
            parent=self.parent(model, data.get("parent"), data.get("parent_model")),
        )
        if upload is None:
            body = {"existing": True, "version": s.ModelVersionSerializer(version).data}
            return Response(body, status=status.HTTP_200_OK)
        return Response(upload_body(upload), status=status.HTTP_201_CREATED)

    def dataset_version(self, ref: Any) -> int:
        """A dataset version named by its id, or by {team (default this one), dataset (its
        slug), version (its number)}: its id. Whether the team may read it is the service's
        to say (apps.models.services.versions)."""
        if isinstance(ref, int) and not isinstance(ref, bool):
            return ref
        message = "Name each dataset version by its id or {team, dataset, version}."
        if not isinstance(ref, dict):
            raise _refused("dataset_versions", message)
        team_slug, slug, number = (
            ref.get("team", self.team.slug),
            ref.get("dataset"),
            ref.get("version"),
        )
        if not (isinstance(team_slug, str) and isinstance(slug, str) and isinstance(number, int)):
            raise _refused("dataset_versions", message)
        if team_slug == self.team.slug:
            found = DatasetVersion.objects.filter(dataset__slug=slug, number=number).first()
        else:
            dataset = catalogue.public_dataset(team_slug=team_slug, slug=slug)
            found = catalogue.ready_version(dataset, number) if dataset else None
        if found is None:
            raise _refused(
                "dataset_versions", f"{team_slug}/{slug} v{number} is not one this team can read."
            )
        return found.pk

    def parent(self, model: Model, number: int | None, other: str | None) -> int | None:
        """The id of the version ``number`` of ``model`` (or of the team's model ``other``)."""
        if number is None:
            return None
        of = self.model(other) if other else model
        found = version_named(self.team, of, number)
        if found is None:
            raise _refused("parent", f"{of.name} has no ready version {number}.")
        return found.pk


# How many files the version detail lists (by path); the files route has them all.
FILES_IN_DETAIL = 1000


class VersionDetailView(_ModelView):
    """One version, by number, alias or "latest": its files, metadata, input/output schema,
    lineage (where it came from, the dataset versions it was made with, its parent and
    children) and what serves it."""

    serializer_class = s.ModelVersionDetailSerializer  # type: ignore[assignment]

    def get(self, request: Request, team_slug: str, slug: str, ref: str) -> Response:
        version = self.version(self.model(slug), ref)
        # The first files by path only (a version may hold 100,000): the rest are on the
        # files route, which pages (``files_next`` says where, when there are more).
        first = list(
            ModelFile.objects.filter(version=version)
            .order_by("path")
            .values_list("path", "size", "blob__sha256")[: FILES_IN_DETAIL + 1]
        )
        files_next = None
        if len(first) > FILES_IN_DETAIL:
            first = first[:FILES_IN_DETAIL]
            files_next = request.build_absolute_uri(
                reverse("api:model_files", args=[self.team.slug, slug, ref])
            )
        context = {
            "files": [
                {"path": path, "size": size, "sha256": sha256} for path, size, sha256 in first
            ],
            "files_next": files_next,
            "lineage": self.lineage(version),
            "servers": [
                {"text": text, "url": url} for text, url in version_servers(self.team, version)
            ],
        }
        return Response(s.ModelVersionDetailSerializer(version, context=context).data)

    def lineage(self, version: ModelVersion) -> dict[str, Any]:
        link = source_link(self.team, version)
        children = version_children(self.team, version)
        return {
            "source": version.source,
            "source_label": version.source_label,
            "link": {"text": link[0], "url": link[1]} if link else None,
            "dataset_versions": [_dataset_ref(link) for link in lineage_links(self.team, version)],
            "parent": (
                {"model": version.parent.model.slug, "number": version.parent.number}
                if version.parent
                else None
            ),
            "children": [{"model": c.model.slug, "number": c.number} for c in children],
        }


def _dataset_ref(link: ModelVersionDataset) -> dict[str, Any]:
    """A lineage dataset as s.DatasetVersionRefSerializer declares it: the dataset version
    while it exists; once it is deleted, only its label (and ``deleted``)."""
    used = link.dataset_version
    if used is None:
        return {
            "id": None,
            "team": None,
            "dataset": None,
            "name": None,
            "number": None,
            "label": link.label,
            "deleted": True,
        }
    return {
        "id": used.pk,
        "team": used.dataset.team.slug,
        "dataset": used.dataset.slug,
        "name": used.dataset.name,
        "number": used.number,
        "label": link.label or f"{used.dataset.name} v{used.number}",
        "deleted": False,
    }


class VersionFilesView(mixins.ListModelMixin, _ModelView):
    """The files of one version, by path, a page at a time (cursor)."""

    serializer_class = s.ModelFileRowSerializer  # type: ignore[assignment]
    pagination_class = _ByPath

    def get_team_queryset(self) -> QuerySet[Any]:
        version = self.version(self.model(self.kwargs["slug"]), self.kwargs["ref"])
        return ModelFile.objects.filter(version=version).select_related("blob")

    def get(self, request: Request, team_slug: str, slug: str, ref: str) -> Response:
        return self.list(request)


class FileDownloadView(_ModelView):
    """One file of a version, streamed."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, team_slug: str, slug: str, ref: str, path: str) -> FileResponse:
        version = self.version(self.model(slug), ref)
        row = ModelFile.objects.filter(version=version, path=path).select_related("blob").first()
        if row is None:
            raise exceptions.NotFound("No such file in this version.")
        return file_response(row)


class ArchiveView(_ModelView):
    """A whole version as a tar stream, made as it is sent."""

    @extend_schema(responses={(200, "application/x-tar"): OpenApiTypes.BINARY})
    def get(self, request: Request, team_slug: str, slug: str, ref: str) -> StreamingHttpResponse:
        model = self.model(slug)
        version = self.version(model, ref)
        return archive_response(
            f"{model.slug}-v{version.number}",
            ModelFile.objects.filter(version=version).select_related("blob"),
        )


class DiffView(_ModelView):
    """What changed from one version to another (each by number, alias or "latest"):
    files added, removed, changed and unchanged, by path."""

    serializer_class = s.ModelDiffSerializer  # type: ignore[assignment]

    def get(self, request: Request, team_slug: str, slug: str, old: str, new: str) -> Response:
        model = self.model(slug)
        before, after = self.version(model, old), self.version(model, new)
        diff = manifest_diff(self.team, before, after)
        return Response({"old": before.number, "new": after.number, **diff})


class AliasView(_ModelView):
    """An alias of the model: GET the version it names; PUT {version: N} to point it there
    (made if new; one audited step); DELETE it."""

    serializer_class = s.ModelAliasSerializer  # type: ignore[assignment]
    # DRF's OPTIONS describes a PUT by looking the object up: there is none to look up.
    metadata_class = None

    def alias(self, model: Model, name: str) -> ModelAlias:
        alias = (
            ModelAlias.objects.filter(model=model, name=name)
            .select_related("version", "updated_by")
            .first()
        )
        if alias is None:
            raise exceptions.NotFound(f"{model.name} has no alias {name}.")
        return alias

    @staticmethod
    def body(alias: ModelAlias) -> dict[str, Any]:
        return {
            "name": alias.name,
            "version": alias.version.number,
            "updated_by": alias.updated_by.email if alias.updated_by else None,
            "updated_at": alias.updated_at,
        }

    def get(self, request: Request, team_slug: str, slug: str, name: str) -> Response:
        return Response(self.body(self.alias(self.model(slug), name)))

    @extend_schema(request=s.ModelAliasSetSerializer, responses={200: s.ModelAliasSerializer})
    def put(self, request: Request, team_slug: str, slug: str, name: str) -> Response:
        model = self.model(slug)
        number = _validated(request, s.ModelAliasSetSerializer)["version"]
        version = version_named(self.team, model, number)
        if version is None:
            raise _refused("version", f"{model.name} has no ready version {number}.")
        alias_set(team=self.team, actor=_user(request), model=model, name=name, version=version)
        return Response(self.body(self.alias(model, name)))

    def delete(self, request: Request, team_slug: str, slug: str, name: str) -> Response:
        model = self.model(slug)
        self.alias(model, name)  # 404 for none
        alias_delete(team=self.team, actor=_user(request), model=model, name=name)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- a version's upload: datasets' resumable protocol, for model uploads ---------------


class _ModelUpload:
    """Narrows datasets' upload views to this team's uploads of a model version, with
    models' permissions and token scope; the protocol itself is theirs."""

    token_area: str | None = "models"
    team_permissions = PERMISSIONS

    def upload(self, upload_id: int) -> Upload:
        upload = Upload.objects.filter(pk=upload_id, purpose=PURPOSE).first()
        if upload is None:
            raise exceptions.NotFound("No such model upload in this team.")
        return upload


@extend_schema(tags=["models"], responses={200: s.ModelUploadSerializer})
class ModelUploadDetailView(_ModelUpload, UploadDetailView):
    """A model version's upload and the chunks still missing: how a client resumes."""

    serializer_class = s.ModelUploadSerializer  # type: ignore[assignment]


@extend_schema(tags=["models"])
class ModelChunkView(_ModelUpload, ChunkView):
    """PUT one chunk's bytes (application/octet-stream), its SHA-256 in X-Chunk-SHA256."""


@extend_schema(tags=["models"])
class ModelChunkTargetView(_ModelUpload, ChunkTargetView):
    """Where to PUT a chunk: a presigned S3 URL (with the header to send), or Lattice."""


@extend_schema(tags=["models"])
@extend_schema_view(post=extend_schema(responses={201: s.ModelVersionSerializer}))
class ModelUploadCompleteView(_ModelUpload, UploadCompleteView):
    """Check everything and make the version ready: the answer is the version (the one
    that already held these very files, if one became ready meanwhile)."""

    serializer_class = s.ModelVersionSerializer  # type: ignore[assignment]

    def made_body(self, version: Any) -> dict[str, Any]:
        return s.ModelVersionSerializer(version).data
