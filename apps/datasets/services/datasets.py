"""Making a dataset, changing its name, description, licence and visibility, and deleting
it. Its versions are made by uploads (apps.datasets.services.uploads)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction

from apps.core.audit import audit_record
from apps.core.tenancy import unscoped
from apps.datasets.entitlements import check_private_dataset
from apps.datasets.hooks import dataset_made_private
from apps.datasets.models import Dataset
from apps.datasets.services.errors import (
    DatasetConflictError,
    DatasetError,
    DatasetPermissionError,
)
from apps.datasets.services.naming import TeamNames
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team


NAMES = TeamNames(Dataset, "dataset", DatasetError, DatasetConflictError)


def _clean_visibility(visibility: str) -> str:
    if visibility not in Dataset.Visibility.values:
        raise DatasetError("Visibility is private or public.", field="visibility")
    return visibility


@transaction.atomic
def dataset_create(
    *,
    team: Team,
    actor: User,
    name: str,
    description: str = "",
    licence: str = "",
    visibility: str = Dataset.Visibility.PRIVATE,
) -> Dataset:
    """Make an empty dataset (its first upload makes version 1); audit it."""
    require_permission(team, actor, "datasets.manage", error=DatasetPermissionError)
    name, slug = NAMES.clean(team, name)
    if _clean_visibility(visibility) == Dataset.Visibility.PRIVATE:
        check_private_dataset(team)  # a 402 on a plan whose datasets are public
    dataset = Dataset.objects.for_team(team).create(
        team=team,
        name=name,
        slug=slug,
        description=description[:5000],
        licence=licence[:80],
        visibility=_clean_visibility(visibility),
        created_by=actor,
    )
    audit_record(team=team, actor=actor, action="dataset.created", target=name)
    return dataset


@transaction.atomic
def dataset_update(
    *,
    team: Team,
    actor: User,
    dataset: Dataset,
    name: str | None = None,
    description: str | None = None,
    licence: str | None = None,
    visibility: str | None = None,
) -> Dataset:
    """Change what is given of the name (the slug follows), description, licence and
    visibility; going private removes other teams' mounts of it. Audited."""
    require_permission(team, actor, "datasets.manage", error=DatasetPermissionError)
    locked = Dataset.objects.for_team(team).select_for_update().get(pk=dataset.pk)
    previous_name, previous_visibility = locked.name, locked.visibility
    changed = _changes_apply(
        team, locked, name=name, description=description, licence=licence, visibility=visibility
    )
    if not changed:
        return locked
    slug = ["slug"] if "name" in changed else []
    try:
        locked.save(update_fields=[*changed, *slug, "updated_at"])
    except IntegrityError:
        # NAMES.clean found the slug free, then another rename took it first.
        raise DatasetConflictError(
            f"This team already has a dataset called {locked.name}.", field="name"
        ) from None
    details: dict[str, Any] = {"fields": changed}
    if "name" in changed:
        details["previous_name"] = previous_name
    if "visibility" in changed:
        details["visibility"] = f"{previous_visibility} -> {locked.visibility}"
        if locked.visibility == Dataset.Visibility.PRIVATE:
            # Other teams' notebooks lose their mounts of it (apps.datasets.hooks).
            details["mounts_removed"] = dataset_made_private(team, locked)
    audit_record(team=team, actor=actor, action="dataset.updated", target=locked.name, **details)
    return locked


def _changes_apply(
    team: Team,
    dataset: Dataset,
    *,
    name: str | None,
    description: str | None,
    licence: str | None,
    visibility: str | None,
) -> list[str]:
    """Check what is given as dataset_create does and set what differs on ``dataset``
    (unsaved); the fields that changed."""
    changed = NAMES.changes_apply(
        team, dataset, name=name, description=description, licence=licence
    )
    if visibility is not None and _clean_visibility(visibility) != dataset.visibility:
        if visibility == Dataset.Visibility.PRIVATE:
            check_private_dataset(team)  # a 402 on a plan whose datasets are public
        dataset.visibility = visibility
        changed.append("visibility")
    return changed


@transaction.atomic
def dataset_delete(*, team: Team, actor: User, dataset: Dataset, confirmation: str) -> None:
    """Delete a dataset and its versions after its name is typed; blobs nothing else holds
    are removed by the hourly housekeeping (apps.datasets.upkeep)."""
    require_permission(team, actor, "datasets.manage", error=DatasetPermissionError)
    if confirmation.strip() != dataset.name:
        raise DatasetError(
            f"Type the dataset's name, {dataset.name}, to delete it.", field="confirmation"
        )
    locked = Dataset.objects.for_team(team).select_for_update().get(pk=dataset.pk)
    # Notebooks mounting it (any team's, if it was public) lose the folder from their
    # next start; the mounts go with it.
    with unscoped():
        locked.delete()
    audit_record(team=team, actor=actor, action="dataset.deleted", target=dataset.name)
