"""What the apps above datasets plug into it (apps.core.hooks), from their ``AppConfig.ready()``.

Datasets know nothing of what uses a version (a notebook's mount, say); those apps tell it
here:

- ``attach_targets(user)``: for the catalogue's "add to" list, each team where ``user`` may
  add a version somewhere, with those places (each an object with ``pk`` and ``name``) and
  the URL a catalogue version's form posts to for each. By default none.
- ``dataset_made_private(team, dataset)``: called inside the edit's transaction when a
  dataset of ``team`` goes private; other teams' uses of it (made from the catalogue while it
  was public) go, and it says how many went. By default none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from apps.core.hooks import Hook

if TYPE_CHECKING:
    from collections.abc import Sequence

    from django.db.models import Model

    from apps.accounts.models import User
    from apps.datasets.models import Dataset
    from apps.teams.models import Team

    # Per team, the places (with pk and name) and the URL each one's form posts to.
    AttachTargets = Sequence[tuple[Team, Sequence[tuple[Model, str]]]]


def _no_targets(user: User) -> AttachTargets:
    return []


def _nothing_removed(team: Team, dataset: Dataset) -> int:
    return 0


attach_targets = Hook("catalogue attach targets", default=_no_targets)
dataset_made_private = Hook("dataset made private", default=_nothing_removed)
