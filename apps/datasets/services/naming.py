"""A team's named things (datasets here; models, in the app above, through the same
functions): the name as kept and its slug, and the changes of name, description and
licence that a change form or PATCH gives. Parametrised by the model class and the noun
("dataset", "model") that the messages name, and by the app's own refusals."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.utils.text import slugify

from apps.datasets.paths import hidden_character, shown

if TYPE_CHECKING:
    from django.db import models

    from apps.core.errors import ServiceError
    from apps.teams.models import Team


def clean_team_name(
    model_cls: type[models.Model],
    team: Team,
    name: str,
    *,
    noun: str,
    error: type[ServiceError],
    conflict: type[ServiceError],
    exclude: int | None = None,
) -> tuple[str, str]:
    """``name`` as kept (NFC, spaces folded) and its slug; ``error`` on "name" if it is
    empty, too long, hides characters or has no letter or digit, ``conflict`` if another
    of the team's ``model_cls`` (not ``exclude``) has its slug."""
    name = unicodedata.normalize("NFC", " ".join(str(name).split()))
    if not name:
        raise error(f"Give the {noun} a name.", field="name")
    hidden = hidden_character(name)
    if hidden:
        # Shown to people (a public dataset to every team): a bidi control would make it
        # read as another.
        raise error(
            f"{shown(name)}: a name cannot contain invisible or text-direction characters "
            f"({hidden}).",
            field="name",
        )
    max_length: int = model_cls._meta.get_field("name").max_length  # type: ignore[union-attr,assignment]
    if len(name) > max_length:
        raise error(f"A name is at most {max_length} characters.", field="name")
    slug = slugify(name)[:80]
    if not slug:
        raise error("A name needs a letter or a digit.", field="name")
    taken = model_cls.objects.for_team(team).filter(slug=slug)  # type: ignore[attr-defined]
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise conflict(f"This team already has a {noun} called {name}.", field="name")
    return name, slug


def named_changes_apply(
    team: Team,
    thing: Any,
    *,
    name: str | None,
    description: str | None,
    licence: str | None,
    noun: str,
    error: type[ServiceError],
    conflict: type[ServiceError],
) -> list[str]:
    """Check what is given of the name (as clean_team_name), description and licence,
    and set what differs on ``thing`` (unsaved; a new name sets its slug too); the fields
    that changed ("name", not "slug")."""
    changed: list[str] = []
    if name is not None:
        name, slug = clean_team_name(
            type(thing), team, name, noun=noun, error=error, conflict=conflict, exclude=thing.pk
        )
        if name != thing.name:
            thing.name, thing.slug = name, slug
            changed.append("name")
    if description is not None and description[:5000] != thing.description:
        thing.description = description[:5000]
        changed.append("description")
    if licence is not None and licence[:80] != thing.licence:
        thing.licence = licence[:80]
        changed.append("licence")
    return changed


@dataclass(frozen=True)
class TeamNames:
    """clean_team_name and named_changes_apply for one kind of the team's things."""

    model_cls: type[models.Model]
    noun: str
    error: type[ServiceError]
    conflict: type[ServiceError]

    def clean(self, team: Team, name: str, *, exclude: int | None = None) -> tuple[str, str]:
        return clean_team_name(
            self.model_cls,
            team,
            name,
            noun=self.noun,
            error=self.error,
            conflict=self.conflict,
            exclude=exclude,
        )

    def changes_apply(self, team: Team, thing: Any, **given: str | None) -> list[str]:
        """named_changes_apply for ``thing``: ``given`` is its name, description, licence."""
        return named_changes_apply(
            team, thing, noun=self.noun, error=self.error, conflict=self.conflict, **given
        )
