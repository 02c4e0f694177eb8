"""A notebook's dataset mounts through the API: list, attach a version, detach.

The rules are apps.notebooks.mounts'; a refusal is the notebooks API's error (404 for a
version the team cannot use, 409 for a name or dataset already mounted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from apps.notebooks import mounts
from apps.notebooks.api.views import NotebookAPIView
from apps.notebooks.models import NotebookMount

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.request import Request

    from apps.notebooks.models import Notebook


class MountSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(required=False, help_text="The folder: /datasets/<name>.")
    version = serializers.IntegerField(help_text="The DatasetVersion's id.")
    dataset = serializers.CharField(read_only=True, help_text="team/slug of the dataset.")
    number = serializers.IntegerField(read_only=True, help_text="The version's number.")
    path = serializers.CharField(read_only=True)
    available = serializers.BooleanField(read_only=True)


def _body(mount: NotebookMount) -> dict[str, Any]:
    version = mount.version
    return {
        "id": mount.pk,
        "name": mount.name,
        "version": version.pk,
        "dataset": f"{version.dataset.team.slug}/{version.dataset.slug}",
        "number": version.number,
        "path": f"/datasets/{mount.name}",
        "available": mounts.mount_available(mount),
    }


@extend_schema(tags=["datasets"])
class _MountView(NotebookAPIView):
    team_permissions = {
        "GET": "notebooks.view",
        "POST": "notebooks.manage",
        "DELETE": "notebooks.manage",
    }
    serializer_class = MountSerializer  # type: ignore[assignment]

    def get_team_queryset(self) -> QuerySet[Any]:
        return NotebookMount.objects.all()

    def notebook(self, notebook_id: int) -> Notebook:
        return self._notebook(notebook_id)


class MountListView(_MountView):
    """The datasets a notebook mounts; attach a version (from the next start)."""

    def get(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        rows = mounts.notebook_mounts(self.notebook(notebook_id))
        return Response([_body(m) for m in rows])

    @extend_schema(request=MountSerializer, responses={201: MountSerializer})
    def post(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        data = MountSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        notebook = self.notebook(notebook_id)
        mount = mounts.mount_add(
            team=self.team,
            actor=self.actor,
            notebook=notebook,
            version=mounts.mountable_version(
                team=self.team, version_id=data.validated_data["version"]
            ),
            name=data.validated_data.get("name"),
        )
        return Response(_body(mount), status=status.HTTP_201_CREATED)


class MountDetailView(_MountView):
    """Detach a dataset (from the next start)."""

    def delete(self, request: Request, team_slug: str, notebook_id: int, mount_id: int) -> Response:
        notebook = self.notebook(notebook_id)
        mount = NotebookMount.objects.filter(pk=mount_id, notebook=notebook).first()
        if mount is None:
            raise exceptions.NotFound("This notebook has no such dataset.")
        mounts.mount_remove(team=self.team, actor=self.actor, notebook=notebook, mount=mount)
        return Response(status=status.HTTP_204_NO_CONTENT)
