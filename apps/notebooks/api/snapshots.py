"""A notebook's snapshots through the API: list, take one, read one, restore one into a copy.

The rules are apps.notebooks.snapshots'; a refusal is the notebooks API's error (404 for a
snapshot the notebook does not have, 409 for one not ready or with no files to snapshot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response

from apps.notebooks import selectors, snapshots
from apps.notebooks.api import serializers as s
from apps.notebooks.api.views import NotebookAPIView
from apps.notebooks.models import NotebookSnapshot

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.request import Request


class SnapshotSerializer(serializers.Serializer[dict[str, Any]]):
    id = serializers.IntegerField(read_only=True)
    state = serializers.ChoiceField(choices=NotebookSnapshot.State.choices, read_only=True)
    reason = serializers.ChoiceField(choices=NotebookSnapshot.Reason.choices, read_only=True)
    files = serializers.IntegerField(read_only=True, help_text="How many files it holds.")
    bytes = serializers.IntegerField(read_only=True, help_text="Their size together.")
    sent_bytes = serializers.IntegerField(
        read_only=True, help_text="Of those, what the host had to send (the rest was stored)."
    )
    failure = serializers.CharField(read_only=True, help_text="Why it failed; empty if not.")
    copied_from = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="For a copy's first snapshot: its source."
    )
    created_at = serializers.DateTimeField(read_only=True)
    finished_at = serializers.DateTimeField(read_only=True, allow_null=True)


class SnapshotCopySerializer(serializers.Serializer[dict[str, Any]]):
    name = serializers.CharField(max_length=200, help_text="The new notebook's name.")


def _body(snapshot: NotebookSnapshot) -> dict[str, Any]:
    return {
        "id": snapshot.pk,
        "state": snapshot.state,
        "reason": snapshot.reason,
        "files": snapshot.file_count,
        "bytes": snapshot.total_bytes,
        "sent_bytes": snapshot.sent_bytes,
        "failure": snapshot.failure,
        "copied_from": snapshot.copied_from_id,
        "created_at": snapshot.created_at,
        "finished_at": snapshot.finished_at,
    }


@extend_schema(tags=["notebooks"])
class _SnapshotView(NotebookAPIView):
    team_permissions = {"GET": "notebooks.view", "POST": "notebooks.manage"}
    serializer_class = SnapshotSerializer  # type: ignore[assignment]

    def get_team_queryset(self) -> QuerySet[Any]:
        return NotebookSnapshot.objects.all()

    def _snapshot(self, notebook_id: int, snapshot_id: int) -> NotebookSnapshot:
        found = selectors.notebook_snapshot(self._notebook(notebook_id), snapshot_id)
        if found is None:
            raise exceptions.NotFound("This notebook has no such snapshot.")
        return found


class SnapshotListView(_SnapshotView):
    """The notebook's kept snapshots, newest first; take one now (202: its host reads the
    files; the snapshot's state says when it is ready)."""

    @extend_schema(responses=SnapshotSerializer(many=True))
    def get(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        rows = selectors.notebook_snapshots(self._notebook(notebook_id))
        return Response([_body(row) for row in rows])

    @extend_schema(request=None, responses={202: SnapshotSerializer})
    def post(self, request: Request, team_slug: str, notebook_id: int) -> Response:
        made = snapshots.snapshot_request(
            team=self.team, actor=self.actor, notebook=self._notebook(notebook_id)
        )
        return Response(_body(made), status=status.HTTP_202_ACCEPTED)


class SnapshotDetailView(_SnapshotView):
    """One snapshot of the notebook."""

    def get(self, request: Request, team_slug: str, notebook_id: int, snapshot_id: int) -> Response:
        return Response(_body(self._snapshot(notebook_id, snapshot_id)))


class SnapshotCopyView(_SnapshotView):
    """Restore a ready snapshot into a new stopped notebook (same template and machine
    type) whose first start restores its files."""

    @extend_schema(request=SnapshotCopySerializer, responses={201: s.NotebookSerializer})
    def post(
        self, request: Request, team_slug: str, notebook_id: int, snapshot_id: int
    ) -> Response:
        snapshot = self._snapshot(notebook_id, snapshot_id)
        data = SnapshotCopySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        copy = snapshots.snapshot_copy(
            team=self.team, actor=self.actor, snapshot=snapshot, name=data.validated_data["name"]
        )
        return Response(self._body(copy.pk), status=status.HTTP_201_CREATED)
