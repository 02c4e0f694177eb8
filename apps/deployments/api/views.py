"""The deployments API: a team's deployments, their revisions, traffic, keys, events,
metrics, request log and replica logs.

A deployment is named by its slug (the first part of its endpoint's host name). Every view
resolves the team from the URL (TeamAPIView) and needs a token with the deployments scope
(read for GET, write for the rest); views validate, name things within the team (a model,
a version, an alias, a machine type, a revision) and call one service
(apps.deployments.services), whose refusals become the API's error format. The endpoint
itself is the gateway's (apps.deployments.gateway), not a view here.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import TYPE_CHECKING, Any, cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.response import Response

from apps.core.api.pagination import Cursor
from apps.core.stream import stream_after, stream_last, stream_resume
from apps.deployments import metrics, services
from apps.deployments.api import serializers as s
from apps.deployments.endpoints import curl_example, endpoints
from apps.deployments.models import (
    ACTIVE_REPLICA_STATUSES,
    Deployment,
    DeploymentEvent,
    DeploymentKey,
    Replica,
    Revision,
)
from apps.machines.selectors import machine_type_offered
from apps.models.models import Model, ModelVersion
from apps.notebooks.api.logs import NDJSON, Follower, NDJSONRenderer, follow_response
from apps.teams.api.base import TeamAPIView

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.request import Request
    from rest_framework.serializers import Serializer

    from apps.accounts.models import User

PERMISSIONS = {
    "GET": "deployments.view",
    "POST": "deployments.manage",
    "PUT": "deployments.manage",
    "PATCH": "deployments.manage",
    "DELETE": "deployments.manage",
}
# How many of the replicas that ended the detail shows, beside the running ones.
ENDED_REPLICAS_SHOWN = 10


def _refused(field: str, message: str) -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [message]})


def _validated(data: Any, serializer: type[Serializer[Any]]) -> dict[str, Any]:
    checked = serializer(data=data)
    checked.is_valid(raise_exception=True)
    return dict(checked.validated_data)


@extend_schema(tags=["deployments"])
class DeploymentAPIView(TeamAPIView):
    """Base of the deployments API's views: the team's live deployments, a token with the
    deployments scope, ``deployment(slug)`` (404 for one the team does not have)."""

    token_area = "deployments"
    team_permissions = PERMISSIONS
    serializer_class = s.DeploymentSerializer

    def get_team_queryset(self) -> QuerySet[Any]:
        return Deployment.objects.filter(deleted_at__isnull=True).select_related(
            "team", "created_by", "rollout"
        )

    @property
    def actor(self) -> User:
        return cast("User", self.request.user)

    def deployment(self, slug: str) -> Deployment:
        found = DeploymentAPIView.get_team_queryset(self).filter(slug=slug).first()
        if found is None:
            raise exceptions.NotFound("No such deployment in this team.")
        return found

    def revision(self, deployment: Deployment, number: int) -> Revision:
        found = Revision.objects.filter(deployment=deployment, number=number).first()
        if found is None:
            raise exceptions.NotFound(f"{deployment.name} has no revision {number}.")
        return found

    def detail(self, slug: str) -> dict[str, Any]:
        """The deployment as the detail route answers it, read now."""
        deployment = self.deployment(slug)
        revisions = list(
            Revision.objects.filter(deployment=deployment).select_related(
                "model_version__model", "machine_type", "created_by"
            )
        )
        running = Replica.objects.filter(
            deployment=deployment, status__in=ACTIVE_REPLICA_STATUSES
        ).select_related("revision", "host")
        ended = (
            Replica.objects.filter(deployment=deployment)
            .exclude(status__in=ACTIVE_REPLICA_STATUSES)
            .select_related("revision", "host")[:ENDED_REPLICAS_SHOWN]
        )
        urls = endpoints(
            deployment, lattice_host=self.request.get_host(), secure=self.request.is_secure()
        )
        context = {
            "revisions": revisions,
            "replicas": [*running, *ended],
            "endpoints": asdict(urls),
            "curl": curl_example(deployment, revisions[0] if revisions else None, urls),
        }
        return s.DeploymentDetailSerializer(deployment, context=context).data

    # --- a spec, as the services take it -----------------------------------------------

    def spec(self, data: dict[str, Any], base: Revision | None) -> services.RevisionSpec:
        """The RevisionSpec ``data`` gives, named within this team; what it leaves out is
        ``base``'s (the newest revision, on a change) or the default (on a create)."""
        given: dict[str, Any] = {}
        if base is not None:
            given = {
                f.name: getattr(base, f.name)
                for f in fields(services.RevisionSpec)
                if f.name not in ("model", "secrets") and hasattr(base, f.name)
            }
            given["follows_alias"] = base.follows_alias
            if base.follows_alias and base.model_version is not None:
                given["model"] = base.model_version.model
                given["model_version"] = None
        for name in (
            "serving",
            "image",
            "port",
            "command",
            "health_path",
            "min_replicas",
            "max_replicas",
            "target_in_flight",
            "scale_to_zero_after",
            "startup_timeout",
            "canary_percent",
            "env",
            "team_secrets",
        ):
            if name in data:
                given[name] = data[name]
        if data.get("serving") == Revision.Serving.BUILTIN:
            # Back to the built-in server: the custom image's fields go with it.
            given.update(image="", command=[], port=services.BUILTIN_PORT, health_path="")
        if "machine_type" in data:
            machine_type = machine_type_offered(data["machine_type"])
            if machine_type is None:
                raise _refused(
                    "machine_type", f"No machine type {data['machine_type']!r} is offered."
                )
            given["machine_type"] = machine_type
        given.update(self._model(data, base))
        given["secrets"] = data.get("secrets")
        return services.RevisionSpec(**given)

    def _model(self, data: dict[str, Any], base: Revision | None) -> dict[str, Any]:
        """What the spec serves: a version of the team's model, or an alias of it."""
        if not ({"model", "version", "follows_alias"} & set(data)):
            return {}
        slug = data.get("model")
        model: Model | None = None
        if slug is not None:
            model = Model.objects.filter(slug=slug).first()
            if model is None:
                raise _refused("model", f"This team has no model {slug!r}.")
        elif base is not None and base.model_version is not None:
            model = base.model_version.model
        if model is None:
            raise _refused("model", "Name the model to serve (its slug).")
        alias = data.get("follows_alias") or ""
        if alias:
            if "version" in data:
                raise _refused("version", "Give a version or an alias to follow, not both.")
            return {"model": model, "follows_alias": alias, "model_version": None}
        if "version" not in data:
            raise _refused("version", "Give the version to serve (its number).")
        version = ModelVersion.objects.filter(model=model, number=data["version"]).first()
        if version is None:
            raise _refused("version", f"{model.name} has no version {data['version']}.")
        return {"model": None, "follows_alias": "", "model_version": version}


class DeploymentListView(mixins.ListModelMixin, DeploymentAPIView):
    """The team's deployments; deploy a model version (revision 1 is rolled out)."""

    pagination_class = Cursor

    def get(self, request: Request, team_slug: str) -> Response:
        return self.list(request)

    @extend_schema(
        request=s.DeploymentCreateSerializer, responses={201: s.DeploymentDetailSerializer}
    )
    def post(self, request: Request, team_slug: str) -> Response:
        data = _validated(request.data, s.DeploymentCreateSerializer)
        if (
            not ({"model", "version", "follows_alias"} & set(data))
            and data.get("serving", Revision.Serving.BUILTIN) == Revision.Serving.BUILTIN
        ):
            raise _refused("model", "Name the model to serve (its slug) and its version.")
        deployment = services.deployment_create(
            team=self.team,
            actor=self.actor,
            name=data["name"],
            auth_mode=data["auth_mode"],
            description=data.get("description", ""),
            spec=self.spec(data, None),
        )
        return Response(self.detail(deployment.slug), status=status.HTTP_201_CREATED)


class DeploymentDetailView(DeploymentAPIView):
    """One deployment: revisions, replicas, traffic, its endpoint's two addresses and a
    ready ``curl``; PATCH its settings (name, description, auth mode, rate limit); DELETE
    it (every replica stopped, its keys revoked)."""

    @extend_schema(responses={200: s.DeploymentDetailSerializer})
    def get(self, request: Request, team_slug: str, slug: str) -> Response:
        return Response(self.detail(slug))

    @extend_schema(
        request=s.DeploymentUpdateSerializer, responses={200: s.DeploymentDetailSerializer}
    )
    def patch(self, request: Request, team_slug: str, slug: str) -> Response:
        data = _validated(request.data, s.DeploymentUpdateSerializer)
        services.deployment_update(
            team=self.team, actor=self.actor, deployment=self.deployment(slug), **data
        )
        return Response(self.detail(slug))

    @extend_schema(responses={204: None})
    def delete(self, request: Request, team_slug: str, slug: str) -> Response:
        services.deployment_delete(
            team=self.team, actor=self.actor, deployment=self.deployment(slug)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class RevisionListView(mixins.ListModelMixin, DeploymentAPIView):
    """The deployment's revisions, newest first; POST a change of its spec: a new revision
    (what is left out stays as the newest revision has it), rolled out by the controller."""

    serializer_class = s.RevisionSerializer  # type: ignore[assignment]
    pagination_class = Cursor

    def get_team_queryset(self) -> QuerySet[Any]:
        deployment = self.deployment(self.kwargs["slug"])
        return Revision.objects.filter(deployment=deployment).select_related(
            "model_version__model", "machine_type", "created_by"
        )

    def get(self, request: Request, team_slug: str, slug: str) -> Response:
        return self.list(request)

    @extend_schema(request=s.DeploymentChangeSerializer, responses={201: s.RevisionSerializer})
    def post(self, request: Request, team_slug: str, slug: str) -> Response:
        deployment = self.deployment(slug)
        data = _validated(request.data, s.DeploymentChangeSerializer)
        newest = (
            Revision.objects.filter(deployment=deployment)
            .select_related("model_version__model", "machine_type")
            .order_by("-number")
            .first()
        )
        revision = services.deployment_change(
            team=self.team,
            actor=self.actor,
            deployment=deployment,
            spec=self.spec(data, newest),
            reason=data["reason"],
        )
        return Response(self._revision_body(revision.pk), status=status.HTTP_201_CREATED)

    def _revision_body(self, pk: int) -> Any:
        revision = Revision.objects.select_related(
            "model_version__model", "machine_type", "created_by"
        ).get(pk=pk)
        return s.RevisionSerializer(revision).data


class RevisionDetailView(DeploymentAPIView):
    """One revision of the deployment, by number."""

    serializer_class = s.RevisionSerializer  # type: ignore[assignment]

    def get(self, request: Request, team_slug: str, slug: str, number: int) -> Response:
        revision = self.revision(self.deployment(slug), number)
        return Response(s.RevisionSerializer(revision).data)


class RollbackView(DeploymentAPIView):
    """Roll back to this revision: a new revision with its spec (its secrets too), reason
    "rolled back to rN", rolled out like any change."""

    serializer_class = s.RevisionSerializer  # type: ignore[assignment]

    @extend_schema(request=None, responses={201: s.RevisionSerializer})
    def post(self, request: Request, team_slug: str, slug: str, number: int) -> Response:
        deployment = self.deployment(slug)
        made = services.deployment_rollback(
            team=self.team,
            actor=self.actor,
            deployment=deployment,
            revision=self.revision(deployment, number),
        )
        return Response(s.RevisionSerializer(made).data, status=status.HTTP_201_CREATED)


class TrafficView(DeploymentAPIView):
    """Split the deployment's requests between serving revisions (by number, in percent,
    summing to 100)."""

    serializer_class = s.TrafficSerializer  # type: ignore[assignment]
    # DRF's OPTIONS describes a PUT by looking the object up: there is none to look up.
    metadata_class = None

    @extend_schema(request=s.TrafficSerializer, responses={200: s.DeploymentDetailSerializer})
    def put(self, request: Request, team_slug: str, slug: str) -> Response:
        deployment = self.deployment(slug)
        data = _validated(request.data, s.TrafficSerializer)
        split: dict[int, int] = {}
        for number, percent in data["split"].items():
            text = str(number).removeprefix("r")
            if not (text.isascii() and text.isdigit()):
                raise _refused("split", f"{number!r} is not a revision number.")
            split[self.revision(deployment, int(text)).pk] = percent
        services.deployment_set_traffic(
            team=self.team, actor=self.actor, deployment=deployment, split=split
        )
        return Response(self.detail(slug))


class KeyListView(mixins.ListModelMixin, DeploymentAPIView):
    """The deployment's keys (a protected deployment takes ``Bearer ldk_...``); make one:
    the answer holds the key itself, this once."""

    serializer_class = s.KeySerializer  # type: ignore[assignment]
    pagination_class = Cursor

    def get_team_queryset(self) -> QuerySet[Any]:
        deployment = self.deployment(self.kwargs["slug"])
        return DeploymentKey.objects.filter(deployment=deployment).select_related("created_by")

    def get(self, request: Request, team_slug: str, slug: str) -> Response:
        return self.list(request)

    @extend_schema(request=s.KeyCreateSerializer, responses={201: s.KeyCreatedSerializer})
    def post(self, request: Request, team_slug: str, slug: str) -> Response:
        data = _validated(request.data, s.KeyCreateSerializer)
        key, plaintext = services.key_create(
            team=self.team, actor=self.actor, deployment=self.deployment(slug), name=data["name"]
        )
        body = s.KeyCreatedSerializer(key, context={"plaintext": plaintext}).data
        return Response(body, status=status.HTTP_201_CREATED)


class KeyDetailView(DeploymentAPIView):
    """One key; DELETE revokes it (the gateway refuses it at once)."""

    serializer_class = s.KeySerializer  # type: ignore[assignment]

    def key(self, deployment: Deployment, key_id: int) -> DeploymentKey:
        found = DeploymentKey.objects.filter(deployment=deployment, pk=key_id).first()
        if found is None:
            raise exceptions.NotFound("No such key of this deployment.")
        return found

    def get(self, request: Request, team_slug: str, slug: str, key_id: int) -> Response:
        return Response(s.KeySerializer(self.key(self.deployment(slug), key_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, team_slug: str, slug: str, key_id: int) -> Response:
        deployment = self.deployment(slug)
        services.key_revoke(
            team=self.team,
            actor=self.actor,
            deployment=deployment,
            key=self.key(deployment, key_id),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class EventListView(mixins.ListModelMixin, DeploymentAPIView):
    """What happened to the deployment, newest first: revisions made, ready, failed, rolled
    back; replicas started, lost, replaced; scaling."""

    serializer_class = s.EventSerializer  # type: ignore[assignment]
    pagination_class = Cursor

    def get_team_queryset(self) -> QuerySet[Any]:
        deployment = self.deployment(self.kwargs["slug"])
        return DeploymentEvent.objects.filter(deployment=deployment).select_related("revision")

    def get(self, request: Request, team_slug: str, slug: str) -> Response:
        return self.list(request)


class MetricsView(DeploymentAPIView):
    """Per step: requests per second by revision, status classes, latency p50/p95/p99 and
    requests in flight, as the gateway counted them (apps.deployments.metrics)."""

    @extend_schema(
        parameters=[s.MetricsQuerySerializer],
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="metrics.series")},
    )
    def get(self, request: Request, team_slug: str, slug: str) -> Response:
        query = _validated(request.query_params, s.MetricsQuerySerializer)
        deployment = self.deployment(slug)
        return Response(metrics.series(deployment, seconds=query["seconds"], step=query["step"]))


class RequestLogView(DeploymentAPIView):
    """The deployment's last requests (method, path, status, milliseconds, revision, time;
    never bodies or credentials), newest first."""

    @extend_schema(responses={200: s.RequestLineSerializer(many=True)})
    def get(self, request: Request, team_slug: str, slug: str) -> Response:
        return Response(metrics.recent_requests(self.deployment(slug)))


class ReplicaLogFollower(Follower):
    """The deployment's stream followed for its replicas' log frames only (its status
    messages are the pages' business), until the timeout or the reader loses access: a
    deployment does not end by itself."""

    def _ends(self, row: dict[str, Any]) -> bool:
        return False

    def _sends(self, row: dict[str, Any]) -> bool:
        return row.get("type") == "logs"


class ReplicaLogsView(DeploymentAPIView):
    """Recent log lines of the deployment's replicas, from its live stream's buffer (the
    notebooks' logs route explains ``after`` and ``epoch``); ``?follow=1`` keeps the
    response open and sends each new log frame as one line of NDJSON until ``?timeout``
    seconds pass or the reader loses access."""

    renderer_classes = [*DeploymentAPIView.renderer_classes, NDJSONRenderer]

    @extend_schema(
        parameters=[s.ReplicaLogsQuerySerializer],
        responses={
            (200, "application/json"): s.ReplicaLogsSerializer,
            (200, NDJSON): OpenApiResponse(
                OpenApiTypes.STR,
                description="With follow=1: one log frame (JSON, with its seq) per line.",
            ),
        },
    )
    def get(self, request: Request, team_slug: str, slug: str) -> Any:
        deployment = self.deployment(slug)
        query = _validated(request.query_params, s.ReplicaLogsQuerySerializer)
        resume = stream_resume(deployment.stream, query["after"], query["epoch"])
        if query["follow"]:
            follower = ReplicaLogFollower(
                deployment.stream,
                after=resume.after,
                seconds=query["timeout"],
                stopped=False,
                allowed=self.access_check(),
            )
            return follow_response(request, follower)
        messages = [
            m
            for m in stream_after(deployment.stream, resume.after, query["limit"])
            if m.get("type") == "logs"
        ]
        page: dict[str, Any] = {
            "last": stream_last(deployment.stream),
            "epoch": resume.epoch,
            "messages": messages,
        }
        if resume.restarted:
            page["restarted"] = True
        return Response(page)
