"""The public dataset catalogue API: every team's public datasets, to anyone signed in.

``GET /api/v1/datasets/?q=cats`` searches them by name and description;
``/api/v1/datasets/<team_slug>/<slug>/`` is one of them, with its ready versions,
whose files and archive can be listed and downloaded like a team's own. A private
dataset answers 404 here, never 403, exactly like one that does not exist: the
catalogue must not tell anyone that a private dataset is there. The reads live in
``apps.datasets.catalogue``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, generics, mixins, serializers
from rest_framework.response import Response

from apps.core.api.pagination import Cursor
from apps.datasets import catalogue
from apps.datasets.api import serializers as s
from apps.datasets.api.views import _ByPath, archive_response, file_response
from apps.datasets.models import Dataset, DatasetVersion

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import FileResponse, StreamingHttpResponse
    from rest_framework.request import Request


class CatalogueVersionSerializer(s.VersionSerializer):
    # Who uploaded a version is the owning team's business, not the catalogue's.
    author = None  # type: ignore[assignment]

    class Meta(s.VersionSerializer.Meta):
        fields = ["number", "message", "file_count", "total_size", "created_at", "ready_at"]
        read_only_fields = fields


class CatalogueDatasetSerializer(serializers.ModelSerializer[Dataset]):
    """A dataset of the catalogue and its latest ready version (``public_datasets`` rows)."""

    team = serializers.CharField(source="team.slug", read_only=True)
    latest_version = serializers.IntegerField(source="latest_number", read_only=True)
    size = serializers.IntegerField(
        source="latest_size", read_only=True, help_text="Bytes, in the latest version."
    )
    file_count = serializers.IntegerField(
        source="latest_file_count", read_only=True, help_text="Files in the latest version."
    )

    class Meta:
        model = Dataset
        fields = [
            "team",
            "name",
            "slug",
            "description",
            "licence",
            "latest_version",
            "size",
            "file_count",
        ]
        read_only_fields = fields


class CatalogueDatasetDetailSerializer(CatalogueDatasetSerializer):
    versions = serializers.SerializerMethodField()

    class Meta(CatalogueDatasetSerializer.Meta):
        fields = [*CatalogueDatasetSerializer.Meta.fields, "created_at", "versions"]
        read_only_fields = fields

    @extend_schema_field(CatalogueVersionSerializer(many=True))
    def get_versions(self, dataset: Dataset) -> list[dict[str, Any]]:
        versions = catalogue.ready_versions(dataset)
        return CatalogueVersionSerializer(versions, many=True).data  # type: ignore[return-value]


class _CatalogueView(generics.GenericAPIView):
    """Signed in only (the default permissions); a token needs datasets:read.

    Not a TeamAPIView: no team's membership is needed, and a token restricted to one
    team may read the catalogue too, since it holds no team's private data.
    """

    token_area = "datasets"
    serializer_class = CatalogueDatasetSerializer

    def dataset(self) -> Dataset:
        dataset = catalogue.public_dataset(
            team_slug=self.kwargs["team_slug"], slug=self.kwargs["slug"]
        )
        if dataset is None:
            # Private and missing read the same: the catalogue hides private datasets.
            raise exceptions.NotFound("No such dataset in the catalogue.")
        return dataset

    def version(self) -> DatasetVersion:
        version = catalogue.ready_version(self.dataset(), self.kwargs["number"])
        if version is None:
            raise exceptions.NotFound("No such version of this dataset.")
        return version


@extend_schema(tags=["catalogue"])
class CatalogueListView(mixins.ListModelMixin, _CatalogueView):
    """Every team's public datasets with a ready version, newest first."""

    pagination_class = Cursor

    def get_queryset(self) -> QuerySet[Dataset]:
        return catalogue.public_datasets(query=self.request.query_params.get("q", ""))

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "q", str, description="Text the name or the description contains (any case)."
            )
        ]
    )
    def get(self, request: Request) -> Response:
        return self.list(request)


@extend_schema(tags=["catalogue"])
class CatalogueDatasetView(_CatalogueView):
    """One public dataset, with its ready versions."""

    serializer_class = CatalogueDatasetDetailSerializer

    def get(self, request: Request, team_slug: str, slug: str) -> Response:
        return Response(CatalogueDatasetDetailSerializer(self.dataset()).data)


@extend_schema(tags=["catalogue"])
class CatalogueFilesView(mixins.ListModelMixin, _CatalogueView):
    """The files of one ready version of a public dataset, by path."""

    serializer_class = s.FileSerializer  # type: ignore[assignment]
    pagination_class = _ByPath

    def get_queryset(self) -> QuerySet[Any]:
        return catalogue.version_files(self.version())

    def get(self, request: Request, team_slug: str, slug: str, number: int) -> Response:
        return self.list(request)


@extend_schema(tags=["catalogue"])
class CatalogueFileView(_CatalogueView):
    """One file of a public dataset's version, streamed."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(
        self, request: Request, team_slug: str, slug: str, number: int, path: str
    ) -> FileResponse:
        row = catalogue.version_files(self.version()).filter(path=path).first()
        if row is None:
            raise exceptions.NotFound("No such file in this version.")
        return file_response(row)


@extend_schema(tags=["catalogue"])
class CatalogueArchiveView(_CatalogueView):
    """A whole version of a public dataset as a tar stream, made as it is sent."""

    @extend_schema(responses={(200, "application/x-tar"): OpenApiTypes.BINARY})
    def get(
        self, request: Request, team_slug: str, slug: str, number: int
    ) -> StreamingHttpResponse:
        version = self.version()
        return archive_response(
            f"{version.dataset.slug}-v{version.number}", catalogue.version_files(version)
        )
