"""Reads about machines that other apps share."""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.machines.models import MachineType

if TYPE_CHECKING:
    from django.db.models import QuerySet


def machine_types_offered() -> QuerySet[MachineType]:
    """The machine types people may choose when they make or change a notebook, in the
    catalogue's order (an admin retires one by making it inactive)."""
    return MachineType.objects.filter(active=True)


def machine_type_offered(slug: str) -> MachineType | None:
    """The offered machine type with ``slug``, or None (no such type, or retired)."""
    return machine_types_offered().filter(slug=slug).first()
