"""Shapes of the models API; the rules live in apps.models.services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.datasets.api.serializers import UploadBlobSerializer
from apps.models.models import Model, ModelFile, ModelVersion


class ModelSerializer(serializers.ModelSerializer[Model]):
    """A model, with its newest ready version's number and its aliases (name -> number).
    Read from apps.models.selectors.models_listed, which annotates ``latest_number``."""

    team = serializers.CharField(source="team.slug", read_only=True)
    latest_version = serializers.IntegerField(
        source="latest_number", read_only=True, allow_null=True, default=None
    )
    # Private, the team's only, for now: one value (datasets' choices are another enum).
    visibility = serializers.CharField(read_only=True)
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = Model
        fields = [
            "team",
            "name",
            "slug",
            "description",
            "licence",
            "visibility",
            "created_at",
            "latest_version",
            "aliases",
        ]
        read_only_fields = ["team", "slug", "visibility", "created_at", "latest_version"]

    @extend_schema_field(serializers.DictField(child=serializers.IntegerField()))
    def get_aliases(self, model: Model) -> dict[str, int | None]:
        return {alias.name: alias.version.number for alias in model.aliases.all()}


class ModelUpdateSerializer(serializers.Serializer[dict[str, object]]):
    """PATCH a model: only the fields sent change."""

    name = serializers.CharField(
        required=False, max_length=80, help_text="Its slug, and so its addresses, follow."
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    licence = serializers.CharField(required=False, allow_blank=True, max_length=80)


class ModelVersionSerializer(serializers.ModelSerializer[ModelVersion]):
    """A version as lists show it."""

    created_by = serializers.CharField(source="created_by.email", default=None, read_only=True)
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "number",
            "status",
            "digest",
            "format",
            "message",
            "file_count",
            "total_size",
            "source",
            "source_label",
            "created_by",
            "created_at",
            "ready_at",
            "failure",
            "aliases",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_aliases(self, version: ModelVersion) -> list[str]:
        return [alias.name for alias in version.aliases.all()]


class LinkSerializer(serializers.Serializer[dict[str, object]]):
    text = serializers.CharField()
    url = serializers.CharField()


class ModelFileSerializer(serializers.Serializer[dict[str, object]]):
    path = serializers.CharField()
    size = serializers.IntegerField()
    sha256 = serializers.CharField()


class ModelFileRowSerializer(serializers.ModelSerializer[ModelFile]):
    """One file of a version, as the files route pages them."""

    sha256 = serializers.CharField(source="blob.sha256", read_only=True)

    class Meta:
        model = ModelFile
        fields = ["path", "size", "sha256"]
        read_only_fields = fields


class DatasetVersionRefSerializer(serializers.Serializer[dict[str, object]]):
    """A dataset version a model version was made with (api.views._dataset_ref). Once that
    dataset version is deleted, only ``label`` and ``deleted`` remain; the rest is null."""

    id = serializers.IntegerField(
        allow_null=True, help_text="What a new version's dataset_versions names."
    )
    team = serializers.CharField(allow_null=True, help_text="The dataset's team's slug.")
    dataset = serializers.CharField(allow_null=True, help_text="The dataset's slug.")
    name = serializers.CharField(allow_null=True)
    number = serializers.IntegerField(allow_null=True)
    label = serializers.CharField(  # type: ignore[assignment]
        help_text='What it was when linked: "Flowers v1".'
    )
    deleted = serializers.BooleanField(help_text="The dataset version is deleted.")


class VersionRefSerializer(serializers.Serializer[dict[str, object]]):
    model = serializers.CharField(help_text="The model's slug.")
    number = serializers.IntegerField()


class ModelLineageSerializer(serializers.Serializer[dict[str, object]]):
    source = serializers.ChoiceField(choices=ModelVersion.Source.choices)  # type: ignore[assignment]
    source_label = serializers.CharField()
    link = LinkSerializer(allow_null=True, help_text="Where it came from, while that exists.")
    dataset_versions = DatasetVersionRefSerializer(many=True)
    parent = VersionRefSerializer(allow_null=True)
    children = VersionRefSerializer(many=True)


class ModelVersionDetailSerializer(ModelVersionSerializer):
    """One version: its files, metadata, input/output schema, lineage and who serves it.
    The view passes ``files``, ``lineage`` and ``servers`` in the context."""

    files = serializers.SerializerMethodField(
        help_text="The first 1,000 files by path; files_next pages through them all."
    )
    files_next = serializers.SerializerMethodField(
        help_text="The files route (versions/<ref>/files/), when there are more files."
    )
    lineage = serializers.SerializerMethodField()
    servers = serializers.SerializerMethodField()

    class Meta(ModelVersionSerializer.Meta):
        fields = [
            *ModelVersionSerializer.Meta.fields,
            "metadata",
            "io_schema",
            "files",
            "files_next",
            "lineage",
            "servers",
        ]
        read_only_fields = fields

    @extend_schema_field(ModelFileSerializer(many=True))
    def get_files(self, version: ModelVersion) -> Any:
        return self.context["files"]

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_files_next(self, version: ModelVersion) -> Any:
        return self.context.get("files_next")

    @extend_schema_field(ModelLineageSerializer)
    def get_lineage(self, version: ModelVersion) -> Any:
        return self.context["lineage"]

    @extend_schema_field(LinkSerializer(many=True))
    def get_servers(self, version: ModelVersion) -> Any:
        return self.context["servers"]


class ModelVersionStartSerializer(serializers.Serializer[dict[str, object]]):
    files = serializers.JSONField(help_text="[{path, size, sha256}, ...]: the whole version.")
    message = serializers.CharField(required=False, allow_blank=True, max_length=500)
    format = serializers.ChoiceField(
        choices=ModelVersion.Format.choices, required=False, default=ModelVersion.Format.OTHER
    )
    metadata = serializers.JSONField(
        required=False, help_text="An object: metrics, parameters, base model, notes (64 KiB)."
    )
    io_schema = serializers.JSONField(
        required=False, allow_null=True, help_text="An object describing inputs and outputs."
    )
    dataset_versions = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        default=list,
        max_length=1000,
        help_text=(
            "The dataset versions it was made with: each an id, or {team (default this "
            "one), dataset (its slug), version (its number)}."
        ),
    )
    parent = serializers.IntegerField(  # type: ignore[assignment]
        required=False,
        allow_null=True,
        min_value=1,
        help_text="The number of the version it was fine-tuned from (of this model, or of "
        "parent_model).",
    )
    parent_model = serializers.SlugField(
        required=False, help_text="The slug of the team's model the parent is a version of."
    )


class ExistingModelVersionSerializer(serializers.Serializer[dict[str, object]]):
    existing = serializers.BooleanField(help_text="True: these very files are this version.")
    version = ModelVersionSerializer()


class ModelUploadSerializer(serializers.Serializer[dict[str, object]]):
    """A model version's upload: datasets' resumable protocol (docs/datasets.md)."""

    id = serializers.IntegerField()
    model = serializers.CharField(allow_null=True)
    version = serializers.IntegerField(allow_null=True, help_text="Its number, once ready.")
    version_id = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    chunk_size = serializers.IntegerField()
    new_bytes = serializers.IntegerField()
    direct = serializers.BooleanField(help_text="Chunks go straight to storage (ask targets).")
    blobs = UploadBlobSerializer(many=True, help_text="Only the files whose bytes are new.")


class ModelAliasSetSerializer(serializers.Serializer[dict[str, object]]):
    version = serializers.IntegerField(min_value=1, help_text="The number of a ready version.")


class ModelAliasSerializer(serializers.Serializer[dict[str, object]]):
    name = serializers.CharField()
    version = serializers.IntegerField()
    updated_by = serializers.CharField(allow_null=True)
    updated_at = serializers.DateTimeField()


class ModelDiffEntrySerializer(serializers.Serializer[dict[str, object]]):
    path = serializers.CharField()
    size = serializers.IntegerField()
    old_size = serializers.IntegerField(required=False, help_text="Changed files only.")


class ModelDiffSerializer(serializers.Serializer[dict[str, object]]):
    old = serializers.IntegerField(help_text="The older version's number.")
    new = serializers.IntegerField()
    added = ModelDiffEntrySerializer(many=True)
    removed = ModelDiffEntrySerializer(many=True)
    changed = ModelDiffEntrySerializer(many=True)
    unchanged = ModelDiffEntrySerializer(many=True)
