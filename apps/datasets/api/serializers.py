"""Shapes of the datasets API; the rules live in apps.datasets.services."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.datasets.models import Dataset, DatasetVersion, VersionFile


class VersionSerializer(serializers.ModelSerializer[DatasetVersion]):
    author = serializers.CharField(source="author.email", default=None, read_only=True)

    class Meta:
        model = DatasetVersion
        fields = [
            "number",
            "message",
            "author",
            "status",
            "file_count",
            "total_size",
            "created_at",
            "ready_at",
        ]
        read_only_fields = fields


class DatasetSerializer(serializers.ModelSerializer[Dataset]):
    team = serializers.CharField(source="team.slug", read_only=True)
    versions = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = [
            "team",
            "name",
            "slug",
            "description",
            "licence",
            "visibility",
            "created_at",
            "versions",
        ]
        read_only_fields = ["team", "slug", "created_at", "versions"]

    @extend_schema_field(VersionSerializer(many=True))
    def get_versions(self, dataset: Dataset) -> list[dict[str, object]]:
        ready = [v for v in dataset.versions.all() if v.status == DatasetVersion.Status.READY]
        return VersionSerializer(ready, many=True).data  # type: ignore[return-value]


class DatasetUpdateSerializer(serializers.Serializer[dict[str, object]]):
    """PATCH a dataset: only the fields sent change."""

    name = serializers.CharField(
        required=False, max_length=80, help_text="Its slug, and so its addresses, follow."
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    licence = serializers.CharField(required=False, allow_blank=True, max_length=80)
    visibility = serializers.ChoiceField(
        choices=Dataset.Visibility.choices,
        required=False,
        help_text="Going private removes other teams' notebook mounts of it.",
    )


class FileSerializer(serializers.ModelSerializer[VersionFile]):
    sha256 = serializers.CharField(source="blob.sha256", read_only=True)
    # The stored bytes', as downloads and archives send them.
    size = serializers.IntegerField(source="blob.size", read_only=True)

    class Meta:
        model = VersionFile
        fields = ["path", "size", "sha256"]
        read_only_fields = fields


class UploadStartSerializer(serializers.Serializer[dict[str, object]]):
    message = serializers.CharField(required=False, allow_blank=True, max_length=500)
    files = serializers.JSONField(help_text="[{path, size, sha256}, ...]: the whole version.")


class UploadBlobSerializer(serializers.Serializer[dict[str, object]]):
    sha256 = serializers.CharField()
    size = serializers.IntegerField()
    chunk_count = serializers.IntegerField()
    missing = serializers.ListField(child=serializers.IntegerField())


class UploadCompleteRequestSerializer(serializers.Serializer[dict[str, object]]):
    allow_identical = serializers.BooleanField(
        required=False,
        default=False,
        help_text=(
            "Make the version even when its files are exactly those of the dataset's latest "
            "version; without it such an upload is refused (409 identical_version) and stays "
            "open."
        ),
    )


class ChunkTargetRequestSerializer(serializers.Serializer[dict[str, object]]):
    sha256 = serializers.CharField(help_text="The chunk's SHA-256, 64 hex digits.")


class ChunkTargetSerializer(serializers.Serializer[dict[str, object]]):
    method = serializers.CharField()
    url = serializers.URLField()
    headers = serializers.DictField(child=serializers.CharField())


class UploadSerializer(serializers.Serializer[dict[str, object]]):
    id = serializers.IntegerField()
    dataset = serializers.CharField()
    status = serializers.CharField()
    chunk_size = serializers.IntegerField()
    new_bytes = serializers.IntegerField()
    version = serializers.IntegerField(allow_null=True)
    direct = serializers.BooleanField(help_text="Chunks go straight to storage (ask targets).")
    blobs = UploadBlobSerializer(many=True, help_text="Only the files whose bytes are new.")
