"""Reads of models that pages, the API and the apps above share, scoped here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import OuterRef, Q, Subquery

from apps.datasets.models import Dataset, DatasetVersion
from apps.models.models import Model, ModelAlias, ModelFile, ModelVersion, ModelVersionDataset

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from apps.teams.models import Team


def models_listed(team: Team) -> QuerySet[Model]:
    """The team's models, each with its latest ready version's number, size and time."""
    latest = (
        ModelVersion.objects.for_team(team)
        .filter(model=OuterRef("pk"), status=ModelVersion.Status.READY)
        .order_by("-number")
    )
    return (
        Model.objects.for_team(team)
        .annotate(
            latest_number=Subquery(latest.values("number")[:1]),
            latest_size=Subquery(latest.values("total_size")[:1]),
            latest_at=Subquery(latest.values("ready_at")[:1]),
        )
        .prefetch_related("aliases__version")
    )


def version_named(team: Team, model: Model, ref: str | int) -> ModelVersion | None:
    """A ready version of ``model`` by number, alias, or "latest"; None if there is none."""
    ready = ModelVersion.objects.for_team(team).filter(
        model=model, status=ModelVersion.Status.READY
    )
    text = str(ref)
    if text.isascii() and text.isdigit():  # "²" is a digit to str.isdigit, not to int()
        return ready.filter(number=int(text)).first()
    if text == "latest":
        return ready.order_by("-number").first()
    alias = ModelAlias.objects.for_team(team).filter(model=model, name=text).first()
    return ready.filter(pk=alias.version_id).first() if alias else None


def version_manifest(team: Team, version: ModelVersion) -> list[tuple[str, str, int]]:
    """The files of ``version`` as (path, sha256, size), by path."""
    rows = (
        ModelFile.objects.for_team(team)
        .filter(version=version)
        .order_by("path")
        .values_list("path", "blob__sha256", "size")
    )
    return [(path, sha256, size) for path, sha256, size in rows]


def manifest_diff(
    team: Team, old: ModelVersion, new: ModelVersion
) -> dict[str, list[dict[str, Any]]]:
    """What changed from ``old`` to ``new``: files added, removed, changed (same path,
    other content) and unchanged, each by path."""
    before = {path: (sha, size) for path, sha, size in version_manifest(team, old)}
    after = {path: (sha, size) for path, sha, size in version_manifest(team, new)}
    diff: dict[str, list[dict[str, Any]]] = {
        "added": [],
        "removed": [],
        "changed": [],
        "unchanged": [],
    }
    for path in sorted(before.keys() | after.keys()):
        if path not in before:
            diff["added"].append({"path": path, "size": after[path][1]})
        elif path not in after:
            diff["removed"].append({"path": path, "size": before[path][1]})
        elif before[path] != after[path]:
            diff["changed"].append(
                {"path": path, "old_size": before[path][1], "size": after[path][1]}
            )
        else:
            diff["unchanged"].append({"path": path, "size": after[path][1]})
    return diff


def version_children(team: Team, version: ModelVersion) -> QuerySet[ModelVersion]:
    """The team's ready versions made from ``version`` (its parent), in any of its models:
    what the version page and the API both list."""
    return (
        ModelVersion.objects.for_team(team)
        .filter(parent=version, status=ModelVersion.Status.READY)
        .select_related("model")
        .order_by("model__name", "number")
    )


def models_from_dataset_version(team: Team, version: DatasetVersion) -> QuerySet[ModelVersion]:
    """The team's ready model versions trained with ``version`` mounted."""
    return (
        ModelVersion.objects.for_team(team)
        .filter(dataset_versions=version, status=ModelVersion.Status.READY)
        .select_related("model")
        .order_by("model__name", "-number")
    )


def lineage_datasets(team: Team, version: ModelVersion) -> QuerySet[DatasetVersion]:
    """The dataset versions ``version`` was made with that ``team`` may still read: its own,
    or a public dataset's (another team's dataset made private since is left out)."""
    links = ModelVersionDataset.objects.for_team(team).filter(version=version)
    # Across teams on purpose: a public dataset's version may be another team's. The filter
    # admits only the team's own and public ones, in the same expression.
    return (
        DatasetVersion.objects.unscoped()
        .filter(pk__in=links.values("dataset_version_id"))
        .filter(Q(team=team) | Q(dataset__visibility=Dataset.Visibility.PUBLIC))
        .select_related("dataset")
        .order_by("dataset__name", "number")
    )


def lineage_links(team: Team, version: ModelVersion) -> list[ModelVersionDataset]:
    """The dataset versions ``version`` was made with, as its links, by label: each with
    its ``dataset_version`` while ``team`` may still read it (its own, or a public
    dataset's), or with only its ``label`` once that dataset version is deleted. Another
    team's dataset made private since is left out."""
    links = (
        ModelVersionDataset.objects.for_team(team)
        .filter(version=version)
        .select_related("dataset_version__dataset__team")
        .order_by("label", "pk")
    )
    shown = []
    for link in links:
        used = link.dataset_version
        if used is None:
            if link.label:
                shown.append(link)
        elif used.team_id == team.pk or used.dataset.visibility == Dataset.Visibility.PUBLIC:
            shown.append(link)
    return shown
