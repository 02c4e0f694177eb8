"""API v1: the machine types a team may start notebooks on, with their live availability.

``GET /api/v1/teams/<team_slug>/machine-types/`` lists every offered type in the
catalogue's order: its specs, hourly price, what the team's plan says of it (a note such as
"needs Pro", from the plan hook apps.notebooks.entitlements.machine_notes; null when the
plan includes it or billing is off) and whether a host here can run it now
(apps.machines.availability). Here, not in apps.machines, because the plan note comes from
billing above machines, through the notebooks' hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from apps.machines.availability import MachineTypeOffer, machine_type_offers
from apps.notebooks.entitlements import machine_notes
from apps.teams.api.base import TeamAPIView

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.request import Request


class AvailabilitySerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=["available", "busy", "unavailable"],
        help_text="available: room now; busy: a host here runs it but none has room, or "
        "its hosts are away for a while (a start waits in line); unavailable: no host here "
        "offers it (a start is refused, 409 no_host_offers_type).",
    )
    free = serializers.IntegerField(help_text="How many more could be placed now.")
    queued = serializers.IntegerField(help_text="Starts waiting in this type's line.")
    label = serializers.CharField()  # type: ignore[assignment]  # the field, not its title


class MachineTypeSerializer(serializers.Serializer):
    slug = serializers.CharField(source="machine_type.slug")
    name = serializers.CharField(source="machine_type.name")
    vcpus = serializers.IntegerField(source="machine_type.vcpus")
    memory_gib = serializers.IntegerField(source="machine_type.memory_gib")
    disk_gib = serializers.IntegerField(source="machine_type.disk_gib")
    gpu_model = serializers.CharField(source="machine_type.gpu_model")
    gpu_count = serializers.IntegerField(source="machine_type.gpu_count")
    gpu_memory_gib = serializers.IntegerField(
        allow_null=True,
        help_text="As a ready host's GPU of the model reports it; null: unknown here.",
    )
    hourly_price = serializers.DecimalField(
        source="machine_type.hourly_price", max_digits=8, decimal_places=4, help_text="USD"
    )
    plan_note = serializers.CharField(
        allow_null=True, help_text='What the team\'s plan says, e.g. "needs Pro"; null: allowed.'
    )
    availability = AvailabilitySerializer()


class MachineTypeListView(TeamAPIView):
    """The machine types this team may pick, with price, plan note and live availability."""

    token_area = "notebooks"
    team_permissions = {"GET": "notebooks.view"}
    serializer_class = MachineTypeSerializer
    pagination_class = None

    def get_team_queryset(self) -> QuerySet[Any]:
        raise NotImplementedError  # not a queryset: the offers are read from the ledger

    @extend_schema(tags=["notebooks"], responses=MachineTypeSerializer(many=True))
    def get(self, request: Request, team_slug: str) -> Response:
        notes = machine_notes(self.team)
        rows = [_row(offer, notes) for offer in machine_type_offers()]
        return Response(MachineTypeSerializer(rows, many=True).data)


def _row(offer: MachineTypeOffer, notes: dict[int, str]) -> dict[str, Any]:
    return {
        "machine_type": offer.machine_type,
        "gpu_memory_gib": offer.gpu_memory_gib,
        "plan_note": notes.get(offer.machine_type.pk),
        "availability": {
            "state": offer.availability.state,
            "free": offer.availability.free,
            "queued": offer.availability.queued,
            "label": offer.availability.label,
        },
    }
