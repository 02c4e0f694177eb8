"""Making a model, changing its name, description and licence, and deleting it. Its
versions are made by uploads (apps.models.services.versions)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction

from apps.core.audit import audit_record
from apps.datasets.models import Upload
from apps.datasets.services.completion import upload_abandon
from apps.datasets.services.naming import TeamNames
from apps.models.models import Model
from apps.models.services.errors import ModelConflictError, ModelError, ModelPermissionError
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team


NAMES = TeamNames(Model, "model", ModelError, ModelConflictError)


def clean_name(team: Team, name: str, *, exclude: int | None = None) -> tuple[str, str]:
    """``name`` as kept (NFC, spaces folded) and its slug; a ModelError on "name" if it
    is empty, too long, hides characters, or is taken in the team."""
    return NAMES.clean(team, name, exclude=exclude)


@transaction.atomic
def model_create(
    *, team: Team, actor: User, name: str, description: str = "", licence: str = ""
) -> Model:
    """Make an empty model (its first upload or save makes version 1); audit it."""
    require_permission(team, actor, "models.manage", error=ModelPermissionError)
    name, slug = clean_name(team, name)
    try:
        with transaction.atomic():
            model = Model.objects.for_team(team).create(
                team=team,
                name=name,
                slug=slug,
                description=description[:5000],
                licence=licence[:80],
                created_by=actor,
            )
    except IntegrityError:  # made by another request since clean_name looked
        raise ModelConflictError(
            f"This team already has a model called {name}.", field="name"
        ) from None
    audit_record(team=team, actor=actor, action="model.created", target=name)
    return model


@transaction.atomic
def model_update(
    *,
    team: Team,
    actor: User,
    model: Model,
    name: str | None = None,
    description: str | None = None,
    licence: str | None = None,
) -> Model:
    """Change what is given of the name (the slug follows), description and licence."""
    require_permission(team, actor, "models.manage", error=ModelPermissionError)
    locked = Model.objects.for_team(team).select_for_update().get(pk=model.pk)
    previous = locked.name
    changed = NAMES.changes_apply(team, locked, name=name, description=description, licence=licence)
    if not changed:
        return locked
    try:
        with transaction.atomic():
            slug = ["slug"] if "name" in changed else []
            locked.save(update_fields=[*changed, *slug, "updated_at"])
    except IntegrityError:
        raise ModelConflictError(
            f"This team already has a model called {locked.name}.", field="name"
        ) from None
    details: dict[str, Any] = {"fields": changed}
    if "name" in changed:
        details["previous_name"] = previous
    audit_record(team=team, actor=actor, action="model.updated", target=locked.name, **details)
    return locked


@transaction.atomic
def model_delete(*, team: Team, actor: User, model: Model, confirmation: str) -> None:
    """Delete a model, its versions and aliases after its name is typed; blobs nothing else
    holds are removed by the datasets' housekeeping (apps.datasets.upkeep)."""
    require_permission(team, actor, "models.manage", error=ModelPermissionError)
    if confirmation.strip() != model.name:
        raise ModelError(
            f"Type the model's name, {model.name}, to delete it.", field="confirmation"
        )
    # Locks in the order a completion takes them: its open uploads, then the model. They
    # are given up, so that completing one answers 409, not a version gone (a 500); the
    # model's save tickets go with it, so a host still saving into it is refused.
    uploads = list(
        Upload.objects.for_team(team)
        .select_for_update(of=("self",))
        .filter(
            status=Upload.Status.OPEN,
            model_version__model=model,
        )
        .order_by("pk")
    )
    locked = Model.objects.for_team(team).select_for_update().get(pk=model.pk)
    for upload in uploads:
        upload_abandon(upload)
    locked.delete()
    audit_record(team=team, actor=actor, action="model.deleted", target=model.name)
