"""Reads for the public dataset catalogue, shared by its pages and its API.

The catalogue is the one place where datasets cross teams: every team's public
datasets, to anyone signed in. The cross-team query goes through the named
escape hatch ``unscoped()`` and limits itself to ``visibility=public`` in the
same expression, so a private row can never leave this module. Versions and
files are then read for the one team that owns the public dataset
(``for_team``), and only while that dataset is still public.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import OuterRef, Q, Subquery

from apps.datasets.models import Dataset, DatasetVersion, VersionFile

if TYPE_CHECKING:
    from django.db.models import QuerySet


READY = DatasetVersion.Status.READY
PUBLIC = Dataset.Visibility.PUBLIC


def public_datasets(*, query: str = "") -> QuerySet[Dataset]:
    """Every team's public datasets that have a ready version, matching ``query``.

    Each row carries its latest ready version as ``latest_number``, ``latest_size``
    and ``latest_file_count``.
    """
    # Across teams by design (the catalogue). It only ever runs inside the query
    # below, which keeps public datasets only, so it reads no private version.
    latest = (
        DatasetVersion.objects.unscoped()
        .filter(dataset=OuterRef("pk"), status=READY)
        .order_by("-number")
    )
    # Across teams by design (the catalogue), and limited to public datasets right here.
    datasets = (
        Dataset.objects.unscoped()
        .filter(visibility=PUBLIC)
        .annotate(
            latest_number=Subquery(latest.values("number")[:1]),
            latest_size=Subquery(latest.values("total_size")[:1]),
            latest_file_count=Subquery(latest.values("file_count")[:1]),
        )
        .filter(latest_number__isnull=False)
        .select_related("team")
    )
    query = query.strip()
    if query:
        datasets = datasets.filter(Q(name__icontains=query) | Q(description__icontains=query))
    return datasets


def public_dataset(*, team_slug: str, slug: str) -> Dataset | None:
    """One dataset of the catalogue, or None: private, without a ready version, or unknown."""
    return public_datasets().filter(team__slug=team_slug, slug=slug).first()


def ready_versions(dataset: Dataset) -> QuerySet[DatasetVersion]:
    """The ready versions of a public dataset, newest first (none if it is private)."""
    # The owning team's rows only, and only while the dataset is public.
    return (
        DatasetVersion.objects.for_team(dataset.team_id)
        .filter(dataset=dataset, dataset__visibility=PUBLIC, status=READY)
        .order_by("-number")
    )


def ready_version(dataset: Dataset, number: int) -> DatasetVersion | None:
    """Version ``number`` of a public dataset, if it is ready."""
    return ready_versions(dataset).filter(number=number).select_related("dataset").first()


def version_files(version: DatasetVersion) -> QuerySet[VersionFile]:
    """The files of a ready version of a public dataset, by path (none otherwise)."""
    # The owning team's rows only, and only while the dataset is public.
    return (
        VersionFile.objects.for_team(version.team_id)
        .filter(
            version=version,
            version__status=READY,
            version__dataset__visibility=PUBLIC,
        )
        .select_related("blob")
        .order_by("path")
    )
