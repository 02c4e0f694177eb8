"""Reads of datasets that the apps above need (notebooks' mounts), and that the app's own
services share, scoped here.

Two of them cross teams, through the named escape hatch ``unscoped()``, each limited in the
same expression to what the caller may read: its own versions, or a public dataset's ready
version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Exists, OuterRef, Q

from apps.datasets.hooks import upload_purposes
from apps.datasets.models import Blob, Dataset, DatasetVersion, VersionFile

if TYPE_CHECKING:
    from collections.abc import Iterable

    from apps.teams.models import Team


def version_usable_by(*, team: Team, pk: int) -> DatasetVersion | None:
    """Version ``pk`` with its dataset, if ``team`` may read it: one of its own (in whatever
    state), or a ready version of another team's public dataset; None for anything else,
    whether it exists or not."""
    version = DatasetVersion.objects.for_team(team).select_related("dataset").filter(pk=pk).first()
    if version is not None:
        return version
    # Across teams on purpose: a public dataset's ready versions are anyone's to read. The
    # filter admits those only, so no other team's private or unfinished version is read.
    return (
        DatasetVersion.objects.unscoped()
        .select_related("dataset")
        .filter(
            pk=pk,
            dataset__visibility=Dataset.Visibility.PUBLIC,
            status=DatasetVersion.Status.READY,
        )
        .first()
    )


def version_manifest(*, team: Team | int, version_id: int) -> list[tuple[str, str, int]]:
    """The files of version ``version_id`` as (path, sha256, size), by path, if ``team`` may
    read it (as ``version_usable_by``); an empty list for anything else.

    Across teams only for a public dataset's ready version (its files carry its own team);
    the filter admits that and the team's own, in the same query.
    """
    readable = Q(team=team) | Q(
        version__dataset__visibility=Dataset.Visibility.PUBLIC,
        version__status=DatasetVersion.Status.READY,
    )
    rows = (
        VersionFile.objects.unscoped()
        .filter(readable, version_id=version_id)
        .order_by("path")
        .values_list("path", "blob__sha256", "size")
    )
    return [(path, sha256, size) for path, sha256, size in rows]


def blobs_held(*, team: Team, shas: Iterable[str]) -> dict[str, int]:
    """Of ``shas``, the blobs ``team`` holds (sha256 -> size): those a ready version of its
    own lists. It sent their bytes (or held them already when it listed them), so it may
    list them again without sending them (or one of its other versions in the store
    does: a model's). One query, whatever other teams store.

    Only these: a blob another team stored, even in a public dataset, is sent again and
    checked, or naming a hash would be enough to read a file and would say it is stored.
    """
    mine = Q(Exists(VersionFile.objects.for_team(team).filter(blob=OuterRef("pk"))))
    # And what the team's other versions in the store hold (a model's, say).
    for purpose in upload_purposes.values():
        mine |= Q(pk__in=purpose.holdings(team))
    held = Blob.objects.filter(sha256__in=list(shas)).filter(mine).order_by()
    return dict(held.values_list("sha256", "size"))


def blobs_in_use() -> Q:
    """Blobs some version of some team holds (a dataset's or another purpose's): never
    collected. Across teams on purpose: housekeeping of the shared store."""
    used = Q(pk__in=VersionFile.objects.unscoped().values("blob_id"))
    for purpose in upload_purposes.values():
        used |= Q(pk__in=purpose.holdings(None))
    return used


def team_blob_sizes(team: Team) -> dict[str, int]:
    """Every blob the team's ready versions hold, of every purpose: sha256 -> size (what
    counts against its storage, each blob once)."""
    held = dict(
        VersionFile.objects.for_team(team).values_list("blob__sha256", "blob__size").distinct()
    )
    for purpose in upload_purposes.values():
        held.update(
            Blob.objects.filter(pk__in=purpose.holdings(team)).values_list("sha256", "size")
        )
    return held
