"""What the apps above models plug into it (apps.core.hooks), from their ``AppConfig.ready()``.

Models know nothing of what made a version or what serves it; those apps tell it here:

- ``source_link(team, version)``: the place a version came from (the notebook, for a
  version saved from one of its sessions; the job's run for one a run made), as (text,
  URL); None when there is none to link (then its ``source_label`` is shown as it is).
  By default it asks ``source_links``' entry for the version's ``source``.
- ``source_links``: per ``ModelVersion.Source`` value ("notebook", "job"), the app that
  made such versions says where one came from, as ``source_link`` does. None registered:
  no link.
- ``version_servers(team, version)``: the deployments serving a version, each as
  (text, URL), for its page and API. By default none.
- ``version_actions(team, role, version)``: what a member with ``role`` may do with a
  version elsewhere ("Deploy"), each as (text, URL), buttons on its page. By default none.
- ``alias_moved(team, actor, alias)``: an alias now names another version (or a new alias
  was made), told once the change commits: deployments following it roll out. By default
  nothing.
- ``files_saved(ticket, manifest, blobs)``: a save of target "files" (apps.models.services.
  saves) has every file stored: the app that asked keeps them (a job run's files), inside
  the completion's transaction. ``manifest``: its {path, size, sha256}; ``blobs``: sha256
  -> Blob. By default nothing is kept.
- ``files_held(team)``: the pks of the blobs the files kept so hold, of ``team`` (of every
  team when None), as a query: held, counted and never collected (as a version's).
  By default none.
- ``save_ended(ticket_id)``: a save ended (ready, existing or failed), told once that
  commits: the app that asked goes on (a job run ends). By default nothing.
- ``save_sources``: per ticket ``source`` ("job", "snapshot"), the ``SaveSource`` of the
  app whose saves of target "files" those are. ``files_saved``, ``files_held`` and
  ``save_ended`` dispatch to it by default (each app sees only its own tickets; the
  held blobs are every source's together).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Q

from apps.core.hooks import Hook, HookTable
from apps.datasets.models import Blob
from apps.models.models import ModelFile, SaveTicket

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.db.models import QuerySet

    from apps.accounts.models import User
    from apps.models.models import ModelAlias, ModelVersion
    from apps.teams.models import Team


source_links: HookTable[str, Callable[[Team, ModelVersion], tuple[str, str] | None]] = HookTable(
    "model version source links"
)


def _link_by_source(team: Team, version: ModelVersion) -> tuple[str, str] | None:
    found = source_links.get(version.source)
    return found(team, version) if found is not None else None


def _no_servers(team: Team, version: ModelVersion) -> list[tuple[str, str]]:
    return []


def _no_actions(team: Team, role: str, version: ModelVersion) -> list[tuple[str, str]]:
    return []


source_link = Hook("model version source link", default=_link_by_source)
version_servers = Hook("model version servers", default=_no_servers)
version_actions = Hook("model version actions", default=_no_actions)


def _nothing_follows(team: Team, actor: User | None, alias: ModelAlias) -> None:
    return None


alias_moved = Hook("model alias moved", default=_nothing_follows)


@dataclass(frozen=True)
class SaveSource:
    """What the app whose tickets carry one ``source`` does with its saves of files.

    - ``saved(ticket, manifest, blobs)``: as ``files_saved``, for its tickets only.
    - ``held(team)``: as ``files_held``: the blobs its kept files hold.
    - ``ended(ticket_id)``: as ``save_ended``, for its tickets only.
    """

    saved: Callable[[SaveTicket, list[dict[str, Any]], dict[str, Blob]], None]
    held: Callable[[Team | None], QuerySet[Any]]
    ended: Callable[[int], None]


save_sources: HookTable[str, SaveSource] = HookTable("save sources")


def _kept_by_source(
    ticket: SaveTicket, manifest: list[dict[str, Any]], blobs: dict[str, Blob]
) -> None:
    found = save_sources.get(ticket.source)
    if found is not None:
        found.saved(ticket, manifest, blobs)


def _held_by_every_source(team: Team | None) -> QuerySet[Any]:
    sources = save_sources.values()
    if not sources:
        return ModelFile.objects.unscoped().none().values("blob_id")
    if len(sources) == 1:
        return sources[0].held(team)
    held = Q()
    for source in sources:
        held |= Q(pk__in=source.held(team))
    return Blob.objects.filter(held).values("pk")


def _ended_by_source(ticket_id: int) -> None:
    source = (
        SaveTicket.objects.unscoped()  # by its own id, the team not known yet
        .filter(pk=ticket_id)
        .values_list("source", flat=True)
        .first()
    )
    found = save_sources.get(source) if source is not None else None
    if found is not None:
        found.ended(ticket_id)


files_saved = Hook("saved files kept", default=_kept_by_source)
files_held = Hook("saved files held", default=_held_by_every_source)
save_ended = Hook("save ended", default=_ended_by_source)
