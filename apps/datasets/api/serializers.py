"""Shapes of the datasets API; the rules live in apps.datasets.services."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.datasets.hooks import source_link
from apps.datasets.models import Dataset, DatasetVersion, VersionFile


class SourceLinkSerializer(serializers.Serializer[dict[str, object]]):
    text = serializers.CharField(help_text='What made it: "Train, run 3".')
    url = serializers.CharField(help_text="Its page.")


class VersionSerializer(serializers.ModelSerializer[DatasetVersion]):
    author = serializers.CharField(source="author.email", default=None, read_only=True)
    source = serializers.CharField(  # type: ignore[assignment]
        read_only=True, help_text='What made it: "upload", or "job" (a job\'s run).'
    )
    source_label = serializers.CharField(
        read_only=True, help_text='It in words, kept after it is gone: "job Train run 3".'
    )
    source_link = serializers.SerializerMethodField(
        help_text="What made it (a job's run), while that exists; null for an upload."
    )

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
            "source",
            "source_label",
            "source_link",
        ]
        read_only_fields = fields

    @extend_schema_field(SourceLinkSerializer(allow_null=True))
    def get_source_link(self, version: DatasetVersion) -> dict[str, str] | None:
        # Answered only to the version's own team (the team endpoints' datasets are its own).
        link = source_link(version.team, version) if version.source != "upload" else None
        return {"text": link[0], "url": link[1]} if link else None


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
