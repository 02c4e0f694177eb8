"""What the apps above datasets plug into it (apps.core.hooks), from their ``AppConfig.ready()``.

Datasets know nothing of what uses a version (a notebook's mount, say); those apps tell it
here:

- ``attach_targets(user)``: for the catalogue's "add to" list, each team where ``user`` may
  add a version somewhere, with those places (each an object with ``pk`` and ``name``) and
  the URL a catalogue version's form posts to for each. By default none.
- ``dataset_made_private(team, dataset)``: called inside the edit's transaction when a
  dataset of ``team`` goes private; other teams' uses of it (made from the catalogue while it
  was public) go, and it says how many went. By default none.
- ``upload_purposes``: per upload purpose other than a dataset's own (``Upload.purpose``:
  "model", say), an ``UploadPurpose``: what completing such an upload makes, and which
  blobs the versions it made hold. Its versions' files live in this app's blob store and
  arrive by this app's resumable uploads: one store, one protocol, one quota.
- ``version_users(team, version)``: for a dataset version's page, what was made from it
  (a model trained on it, say), each as (text, URL). By default nothing.
- ``source_link(team, version)``: what made a version other than an upload (a job's run,
  ``source`` "job"), as (text, URL) while it exists and ``team`` may see it; None when
  there is none to link (its ``source_label`` is then shown as it is). By default None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apps.core.hooks import Hook, HookTable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from django.db.models import Model, QuerySet

    from apps.accounts.models import User
    from apps.datasets.models import Blob, Dataset, DatasetVersion, Upload
    from apps.teams.models import Team

    # Per team, the places (with pk and name) and the URL each one's form posts to.
    AttachTargets = Sequence[tuple[Team, Sequence[tuple[Model, str]]]]


def _no_targets(user: User) -> AttachTargets:
    return []


def _nothing_removed(team: Team, dataset: Dataset) -> int:
    return 0


attach_targets = Hook("catalogue attach targets", default=_no_targets)
dataset_made_private = Hook("dataset made private", default=_nothing_removed)


def _nothing_made(team: Team, version: DatasetVersion) -> list[tuple[str, str]]:
    return []


version_users = Hook("dataset version users", default=_nothing_made)


def _no_link(team: Team, version: DatasetVersion) -> tuple[str, str] | None:
    return None


source_link = Hook("dataset version source link", default=_no_link)


@dataclass(frozen=True)
class UploadPurpose:
    """What an app whose versions live in the blob store tells datasets about them.

    - ``permission``: the team permission every step of such an upload needs.
    - ``finish(team, actor, upload, manifest, blobs)``: inside the completion's transaction,
      once every blob is checked and stored (``blobs``: sha256 -> Blob for every file of
      ``manifest``): make the version ready and return it.
    - ``abandon(upload)``: the upload was given up (housekeeping): forget its version.
    - ``holdings(team)``: the pks of the blobs the ready versions of ``team`` (of every
      team when None) hold, as a query: they count as held (no upload sends them again),
      against the team's storage, and are never collected.
    - ``describe(upload)``: what the upload's answer says it makes, e.g. {"model": slug}.
    - ``system``: its uploads are the system's, with no person behind them (a notebook's
      snapshot, through a save ticket that is the right itself): their steps take no
      actor (``actor`` None, and only for such a purpose), and the storage quota never
      refuses one (refusing would lose a person's files), though what they hold counts
      in the team's usage as any other.
    """

    permission: str
    finish: Callable[[Team, User | None, Upload, list[dict[str, Any]], dict[str, Blob]], Any]
    abandon: Callable[[Upload], None]
    holdings: Callable[[Team | None], QuerySet[Any]]
    describe: Callable[[Upload], dict[str, Any]]
    system: bool = False


upload_purposes = HookTable[str, UploadPurpose]("upload purposes")
