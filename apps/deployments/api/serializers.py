"""Shapes of the deployments API; the rules live in apps.deployments.services.

A revision's secret variables are written (``secrets``) and never read back: every shape
here shows their names only (``secret_names``)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.deployments.models import Deployment, DeploymentEvent, DeploymentKey, Replica, Revision
from apps.teams.api.serializers import secret_names_field


class RevisionSerializer(serializers.ModelSerializer[Revision]):
    """One immutable revision: its spec, and what the controller says of it now."""

    model = serializers.CharField(
        source="model_version.model.slug", default=None, read_only=True, allow_null=True
    )
    version = serializers.IntegerField(
        source="model_version.number", default=None, read_only=True, allow_null=True
    )
    machine_type = serializers.CharField(source="machine_type.slug", read_only=True)
    created_by = serializers.CharField(source="created_by.email", default=None, read_only=True)

    class Meta:
        model = Revision
        fields = [
            "id",
            "number",
            "reason",
            "status",
            "status_message",
            "model",
            "version",
            "follows_alias",
            "serving",
            "image",
            "port",
            "command",
            "health_path",
            "machine_type",
            "min_replicas",
            "max_replicas",
            "target_in_flight",
            "scale_to_zero_after",
            "startup_timeout",
            "canary_percent",
            "env",
            "secret_names",
            "team_secrets",
            "replicas_wanted",
            "created_by",
            "created_at",
            "ready_at",
            "retired_at",
        ]
        read_only_fields = fields


class ReplicaSerializer(serializers.ModelSerializer[Replica]):
    revision = serializers.IntegerField(source="revision.number", read_only=True)
    host = serializers.CharField(source="host.name", default=None, read_only=True)

    class Meta:
        model = Replica
        fields = [
            "id",
            "revision",
            "status",
            "status_message",
            "host",
            "requested_at",
            "started_at",
            "ready_at",
            "ended_at",
            "exit_reason",
        ]
        read_only_fields = fields


class TrafficShareSerializer(serializers.Serializer[dict[str, object]]):
    revision = serializers.IntegerField(help_text="The revision's number.")
    revision_id = serializers.IntegerField()
    percent = serializers.IntegerField()


class EndpointsSerializer(serializers.Serializer[dict[str, object]]):
    origin = serializers.CharField(
        help_text="Its own origin: <slug>--<team>.<content domain>; empty when that name is "
        "longer than a DNS label allows (63 characters; see origin_note)."
    )
    api = serializers.CharField(help_text="The same endpoint as a path on Lattice's origin.")
    origin_note = serializers.CharField(
        help_text="Why there is no origin of its own (a too-long host name), else empty."
    )


class DeploymentSerializer(serializers.ModelSerializer[Deployment]):
    """A deployment as lists show it."""

    team = serializers.CharField(source="team.slug", read_only=True)
    created_by = serializers.CharField(source="created_by.email", default=None, read_only=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "team",
            "name",
            "slug",
            "description",
            "auth_mode",
            "rate_limit_per_minute",
            "status",
            "status_message",
            "paused_reason",
            "last_request_at",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class DeploymentDetailSerializer(DeploymentSerializer):
    """One deployment: its revisions (newest first), replicas (running, and the last ones
    that ended), the traffic split, both forms of its endpoint and a ready ``curl``. The
    view passes ``revisions``, ``replicas``, ``endpoints`` and ``curl`` in the context."""

    revisions = serializers.SerializerMethodField()
    rollout = serializers.IntegerField(
        source="rollout.number",
        default=None,
        read_only=True,
        allow_null=True,
        help_text="The number of the revision being rolled out, if any.",
    )
    replicas = serializers.SerializerMethodField()
    traffic = serializers.SerializerMethodField()
    endpoints = serializers.SerializerMethodField()
    curl = serializers.SerializerMethodField(
        help_text="A call of the endpoint; put a token (or a key) in place of $LATTICE_TOKEN."
    )

    class Meta(DeploymentSerializer.Meta):
        fields = [
            *DeploymentSerializer.Meta.fields,
            "rollout",
            "traffic",
            "endpoints",
            "curl",
            "revisions",
            "replicas",
        ]
        read_only_fields = fields

    @extend_schema_field(RevisionSerializer(many=True))
    def get_revisions(self, deployment: Deployment) -> Any:
        return RevisionSerializer(self.context["revisions"], many=True).data

    @extend_schema_field(ReplicaSerializer(many=True))
    def get_replicas(self, deployment: Deployment) -> Any:
        return ReplicaSerializer(self.context["replicas"], many=True).data

    @extend_schema_field(TrafficShareSerializer(many=True))
    def get_traffic(self, deployment: Deployment) -> Any:
        numbers = {r.pk: r.number for r in self.context["revisions"]}
        shares = [
            {"revision": numbers.get(int(pk)), "revision_id": int(pk), "percent": percent}
            for pk, percent in (deployment.traffic or {}).items()
        ]
        return sorted(shares, key=lambda share: share["revision"] or 0)

    @extend_schema_field(EndpointsSerializer)
    def get_endpoints(self, deployment: Deployment) -> Any:
        return self.context["endpoints"]

    @extend_schema_field(serializers.CharField())
    def get_curl(self, deployment: Deployment) -> Any:
        return self.context["curl"]


class SpecSerializer(serializers.Serializer[dict[str, object]]):
    """A revision's spec. On a change, what is left out stays as the newest revision has it
    (secrets too); on a create, left out is the default."""

    model = serializers.SlugField(
        required=False, help_text="The slug of the team's model to serve."
    )
    version = serializers.IntegerField(
        required=False, min_value=1, help_text="The number of a ready version of the model."
    )
    follows_alias = serializers.SlugField(
        required=False,
        allow_blank=True,
        help_text="Serve the version an alias of the model names, and follow it when it moves "
        "(instead of a fixed version).",
    )
    serving = serializers.ChoiceField(choices=Revision.Serving.choices, required=False)
    image = serializers.CharField(
        required=False, allow_blank=True, help_text="Custom serving: the image to run."
    )
    port = serializers.IntegerField(required=False, help_text="Custom serving: its port.")
    command = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False),
        required=False,
        help_text="Custom serving: the command (empty: the image's own).",
    )
    health_path = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="Custom serving: the path that answers 200 once it is ready.",
    )
    machine_type = serializers.SlugField(required=False, help_text="A machine type's slug.")
    min_replicas = serializers.IntegerField(required=False, help_text="0: scale to zero.")
    max_replicas = serializers.IntegerField(required=False)
    target_in_flight = serializers.IntegerField(
        required=False, help_text="Requests in flight per replica autoscaling aims at."
    )
    scale_to_zero_after = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="Seconds without a request before scaling to zero (min_replicas 0); null: never.",
    )
    startup_timeout = serializers.IntegerField(required=False)
    canary_percent = serializers.IntegerField(
        required=False, help_text="The share a new revision gets first (0: all at once)."
    )
    env = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        help_text="Plain environment variables: {NAME: value}.",
    )
    secrets = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False),
        required=False,
        write_only=True,
        help_text="Secret variables: stored encrypted, never shown again (only their names). "
        "Left out on a change: the newest revision's are kept; {}: none.",
    )
    team_secrets = secret_names_field(required=False)


class DeploymentCreateSerializer(SpecSerializer):
    name = serializers.CharField(
        max_length=200, help_text="Its slug, the endpoint's name, follows."
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    auth_mode = serializers.ChoiceField(
        choices=Deployment.Auth.choices, required=False, default=Deployment.Auth.PROTECTED
    )
    machine_type = serializers.SlugField(help_text="A machine type's slug.")


class DeploymentChangeSerializer(SpecSerializer):
    reason = serializers.CharField(
        required=False, max_length=200, default="changed", help_text="What the change is for."
    )


class DeploymentUpdateSerializer(serializers.Serializer[dict[str, object]]):
    """PATCH a deployment's settings: only the fields sent change (its spec changes by a
    new revision, POST .../revisions/)."""

    name = serializers.CharField(
        required=False, max_length=200, help_text="Its slug, and so its endpoint, stay."
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    auth_mode = serializers.ChoiceField(choices=Deployment.Auth.choices, required=False)
    rate_limit_per_minute = serializers.IntegerField(
        required=False, help_text="Per caller; 0: no limit."
    )


class TrafficSerializer(serializers.Serializer[dict[str, object]]):
    split = serializers.DictField(
        child=serializers.IntegerField(),
        help_text='Revision number -> percent, summing to 100: {"3": 90, "4": 10}.',
    )


class KeySerializer(serializers.ModelSerializer[DeploymentKey]):
    prefix = serializers.CharField(source="display_prefix", read_only=True)
    created_by = serializers.CharField(source="created_by.email", default=None, read_only=True)

    class Meta:
        model = DeploymentKey
        fields = ["id", "name", "prefix", "created_by", "created_at", "revoked_at"]
        read_only_fields = fields


class KeyCreateSerializer(serializers.Serializer[dict[str, object]]):
    name = serializers.CharField(max_length=200, help_text="What uses it.")


class KeyCreatedSerializer(KeySerializer):
    key = serializers.SerializerMethodField(
        help_text="The key itself (ldk_...): shown this once, never again."
    )

    class Meta(KeySerializer.Meta):
        fields = [*KeySerializer.Meta.fields, "key"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField())
    def get_key(self, key: DeploymentKey) -> Any:
        return self.context["plaintext"]


class EventSerializer(serializers.ModelSerializer[DeploymentEvent]):
    revision = serializers.IntegerField(
        source="revision.number", default=None, read_only=True, allow_null=True
    )
    replica = serializers.PrimaryKeyRelatedField(read_only=True)  # type: ignore[var-annotated]

    class Meta:
        model = DeploymentEvent
        fields = ["id", "created_at", "kind", "message", "revision", "replica"]
        read_only_fields = fields


class MetricsQuerySerializer(serializers.Serializer[dict[str, object]]):
    seconds = serializers.IntegerField(
        min_value=10, max_value=24 * 3600, default=900, help_text="How far back."
    )
    step = serializers.IntegerField(min_value=1, max_value=3600, default=5, help_text="Seconds.")


class RequestLineSerializer(serializers.Serializer[dict[str, object]]):
    method = serializers.CharField()
    path = serializers.CharField()
    status = serializers.IntegerField()
    ms = serializers.FloatField()
    revision = serializers.IntegerField(allow_null=True, help_text="The revision's id.")
    revision_number = serializers.IntegerField(
        allow_null=True, help_text="The revision's number (the pages' \"r<number>\")."
    )
    time = serializers.CharField()


class ReplicaLogsQuerySerializer(serializers.Serializer[dict[str, object]]):
    after = serializers.IntegerField(
        min_value=0, default=0, help_text="Only messages numbered after this (the last seq seen)."
    )
    epoch = serializers.CharField(
        max_length=64,
        required=False,
        default="",
        allow_blank=True,
        help_text="The epoch the page that gave `after` said (see the notebooks' logs).",
    )
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=500)
    follow = serializers.BooleanField(
        default=False,
        help_text="Stream new log frames as NDJSON until the timeout (a deployment does not "
        "end by itself) or the reader loses access.",
    )
    timeout = serializers.IntegerField(
        min_value=1,
        max_value=600,
        default=60,
        help_text="With follow: end the stream after this many seconds.",
    )


class ReplicaLogsSerializer(serializers.Serializer[dict[str, object]]):
    last = serializers.IntegerField(help_text="The number of the stream's latest message.")
    epoch = serializers.CharField(help_text="The stream buffer's epoch; pass it back with after.")
    restarted = serializers.BooleanField(required=False)
    messages = serializers.ListField(
        child=serializers.DictField(),
        help_text='The replicas\' log frames, oldest first: {"type": "logs", "lines": [...], '
        '"seq": n}.',
    )
