"""Aliases: a name (``production``, ``staging``, anything) for one ready version of its
model. Moving one is a single audited step, made under the model's lock, so two moves at
once are one after the other: the last wins, both are in the audit log, and the alias
always names a ready version of its own model."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from django.db import transaction

from apps.core.audit import audit_record
from apps.models.hooks import alias_moved
from apps.models.models import Model, ModelAlias, ModelVersion
from apps.models.services.errors import ModelError, ModelPermissionError
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team

ALIAS = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
# Names that mean something already where an alias is named (a version's number, the
# newest version).
RESERVED = {"latest"}


def clean_alias(name: object) -> str:
    name = str(name or "").strip().lower()
    if not ALIAS.match(name) or name.isdigit():
        raise ModelError(
            "An alias is 1 to 40 lowercase letters, digits and dashes, not only digits "
            "(e.g. production).",
            field="name",
        )
    if name in RESERVED:
        raise ModelError(f"{name} always means the newest version: pick another.", field="name")
    return name


@transaction.atomic
def alias_set(
    *, team: Team, actor: User, model: Model, name: str, version: ModelVersion
) -> ModelAlias:
    """Point alias ``name`` of ``model`` at ``version`` (made if new); audited."""
    require_permission(team, actor, "models.manage", error=ModelPermissionError)
    name = clean_alias(name)
    locked = Model.objects.for_team(team).select_for_update().get(pk=model.pk)
    target = (
        ModelVersion.objects.for_team(team)
        .filter(pk=version.pk, model=locked, status=ModelVersion.Status.READY)
        .first()
    )
    if target is None:
        raise ModelError("An alias names a ready version of its own model.", field="version")
    alias = ModelAlias.objects.for_team(team).filter(model=locked, name=name).first()
    previous = None
    if alias is None:
        alias = ModelAlias.objects.for_team(team).create(
            team=team, model=locked, name=name, version=target, updated_by=actor
        )
    else:
        previous = alias.version.number
        alias.version, alias.updated_by = target, actor
        alias.save(update_fields=["version", "updated_by", "updated_at"])
    audit_record(
        team=team,
        actor=actor,
        action="model.alias_moved",
        target=f"{locked.name}@{name}",
        to=f"v{target.number}",
        **({"previous": f"v{previous}"} if previous is not None else {}),
    )
    if previous != target.number:
        transaction.on_commit(lambda: alias_moved(team, actor, alias))
    return alias


@transaction.atomic
def alias_delete(*, team: Team, actor: User, model: Model, name: str) -> None:
    require_permission(team, actor, "models.manage", error=ModelPermissionError)
    locked = Model.objects.for_team(team).select_for_update().get(pk=model.pk)
    deleted, _ = ModelAlias.objects.for_team(team).filter(model=locked, name=name).delete()
    if not deleted:
        raise ModelError(f"{locked.name} has no alias {name}.", field="name")
    audit_record(
        team=team, actor=actor, action="model.alias_removed", target=f"{locked.name}@{name}"
    )
