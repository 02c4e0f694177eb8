"""Snapshots of a notebook's /notebooks files in the team's blob store (issue 20, ARCHITECTURE
decision 11): taken by the host that holds the volume, restored by the host a start lands on.

- ``snapshot_take(notebook=, reason=, session=, actor=)``: asks ``notebook.volume_host``'s agent
  (``agent.snapshot``, on commit) to read the volume and save it through a save ticket of
  target "files" with no person behind it (apps.models.services.saves.save_begin_system):
  incremental over the blob store. Returns the snapshot being taken (a new SAVING row, or
  the one already SAVING), or None when there is nothing to read (no volume host, or it is
  offline).
- ``snapshot_for_stop(session)``: the same, for the snapshot ``agent.stop`` takes once the
  workload stopped (lifecycle.ending.stop_on_host sends what it returns as ``snapshot=``).
- ``snapshot_request(team=, actor=, notebook=)``: "Take a snapshot" (notebooks.manage).
- ``snapshot_latest(notebook)``: the newest READY snapshot, or None.
- ``snapshot_restore_plan(snapshot, volume=, lifetime=)``: what ``agent.start`` gets as its
  ``restore`` option: {"snapshot": id, "volume": name, "total": bytes, "files": [{"path",
  "size", "sha256", "mode", "url"}]}, each url a per-object read link
  (apps.datasets.blob_urls) that lives ``lifetime``.
- ``snapshot_ended``: a Hook told (on commit) when a snapshot ends, READY or FAILED
  (apps.notebooks.volumes registers what moves on: a start waiting for it).
- ``snapshot_copy(team=, actor=, snapshot=, name=)``: a new notebook whose files are that
  snapshot's (its first start restores them): its first snapshot is a COPY row listing the
  same blobs; no byte is copied.

The save's end comes here through apps.models.hooks.save_sources ("snapshot"): ``files_kept``
(the manifest's files become SnapshotFile rows, in the upload's completion: the blobs are
held from the moment they are stored), ``files_held`` (what snapshots hold: never collected,
counted in the team's storage; a system upload is never refused by the quota) and
``ticket_ended`` (a save that failed or held no files). A READY snapshot past the newest
``LATTICE_SNAPSHOT_KEEP`` of its notebook goes (``_retention``).
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from apps.core.audit import audit_record
from apps.core.hooks import Hook
from apps.datasets.blob_urls import read_url
from apps.datasets.models import Upload
from apps.machines.agent import agent_snapshot
from apps.machines.models import Host
from apps.models.models import SaveTicket
from apps.models.services.saves import (
    DEFAULT_MODE,
    STOPPED_ANSWERING,
    save_abandon,
    save_begin_system,
    ticket_url,
)
from apps.notebooks.errors import NotebookConflictError, NotebookError, NotebookPermissionError
from apps.notebooks.locks import notebook_locked
from apps.notebooks.models import (
    Notebook,
    NotebookSession,
    NotebookSnapshot,
    SnapshotFile,
    Status,
)
from apps.notebooks.names import notebook_like
from apps.runtimes.base import NOTEBOOKS_PATH
from apps.teams.permissions import require_permission

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from apps.accounts.models import User
    from apps.datasets.models import Blob
    from apps.teams.models import Team

# The save ticket's source for a snapshot (apps.models.hooks.save_sources); source_id its pk.
SOURCE = "snapshot"
# Why a snapshot in flight gave way to the one taken when the notebook stopped.
SUPERSEDED = "Replaced by the snapshot taken when the notebook stopped."
NO_FILES_YET = "This notebook has no files to snapshot yet: start it once."
HOST_OFFLINE = "The host that holds this notebook's files is offline: try again when it is back."


def _nothing_waits(snapshot: NotebookSnapshot) -> None:
    return None


snapshot_ended: Hook[[NotebookSnapshot], None] = Hook("snapshot ended", default=_nothing_waits)


def keep_count() -> int:
    """How many READY snapshots of a notebook are kept (at least the newest)."""
    return max(1, int(settings.LATTICE_SNAPSHOT_KEEP))


def snapshot_saving(notebook: Notebook) -> NotebookSnapshot | None:
    """The notebook's snapshot being taken (one at most), or None."""
    return (
        NotebookSnapshot.objects.for_team(notebook.team_id)
        .filter(notebook=notebook, state=NotebookSnapshot.State.SAVING)
        .first()
    )


def _readable_host(notebook: Notebook) -> Host | None:
    host = notebook.volume_host
    if host is None or host.status == Host.Status.OFFLINE:
        return None
    return host


def _begin(
    notebook: Notebook,
    host: Host,
    *,
    reason: str,
    session: NotebookSession | None,
    actor: User | None,
) -> tuple[NotebookSnapshot, SaveTicket, str]:
    """A SAVING snapshot of ``notebook`` read on ``host``, and its ticket (row, ticket)."""
    snapshot = NotebookSnapshot.objects.for_team(notebook.team_id).create(
        team_id=notebook.team_id,
        notebook=notebook,
        session=session,
        host=host,
        reason=reason,
        created_by=actor,
    )
    ticket, token = save_begin_system(
        team=notebook.team,
        folder=NOTEBOOKS_PATH,
        root=NOTEBOOKS_PATH,
        source=SOURCE,
        source_id=snapshot.pk,
        source_label=f"{notebook.name}: snapshot {snapshot.pk}",
    )
    snapshot.save_ticket = ticket
    snapshot.save(update_fields=["save_ticket"])
    return snapshot, ticket, token


@transaction.atomic
def snapshot_take(
    *,
    notebook: Notebook,
    reason: str,
    session: NotebookSession | None = None,
    actor: User | None = None,
) -> NotebookSnapshot | None:
    """A snapshot of the notebook's volume on its volume host, ``agent.snapshot`` queued on
    that host once this commits; the one already SAVING if any; None with no volume host or
    an offline one."""
    locked = notebook_locked(notebook.team, notebook)
    saving = snapshot_saving(locked)
    if saving is not None:
        return saving
    host = _readable_host(locked)
    if host is None:
        return None
    snapshot, ticket, token = _begin(locked, host, reason=reason, session=session, actor=actor)
    args = (host.name, locked.volume, ticket_url(ticket), token)
    transaction.on_commit(partial(agent_snapshot.apply_async, args=args, queue=host.queue))
    return snapshot


@transaction.atomic
def snapshot_request(*, team: Team, actor: User, notebook: Notebook) -> NotebookSnapshot:
    """ "Take a snapshot" (notebooks.manage): snapshot_take, reason MANUAL, of the running
    session's files or the stopped volume's; audited. Refused (409) with no files on a host
    that answers."""
    require_permission(team, actor, "notebooks.manage", error=NotebookPermissionError)
    locked = notebook_locked(team, notebook)
    if locked.volume_host_id is None:
        raise NotebookConflictError(NO_FILES_YET)
    session = (
        NotebookSession.objects.for_team(team)
        .filter(notebook=locked, ended_at__isnull=True, host_id=locked.volume_host_id)
        .first()
    )
    snapshot = snapshot_take(
        notebook=locked, reason=NotebookSnapshot.Reason.MANUAL, session=session, actor=actor
    )
    if snapshot is None:
        raise NotebookConflictError(HOST_OFFLINE)
    audit_record(team=team, actor=actor, action="notebook.snapshot_taken", target=locked.name)
    return snapshot


@transaction.atomic
def snapshot_for_stop(
    session: NotebookSession, remove_volumes: list[str] | None = None
) -> dict[str, str] | None:
    """What ``agent.stop`` gets as ``snapshot=`` (inside the stop's transaction): a new STOP
    snapshot's {"volume", "ticket_url", "ticket"}, when the session ran where the notebook's
    volume is, that host answers and the volume stays. A snapshot in flight that cannot
    hold this session's changes gives way to it (``_gives_way``: FAILED, its ticket ended;
    the stop's is newer and holds all it would); a stop or move one taken since the
    session started is left (a stop sent again takes no second)."""
    notebook = session.notebook
    if remove_volumes and notebook.volume in remove_volumes:
        return None
    if session.host_id is None or notebook.volume_host_id != session.host_id:
        return None
    locked = (
        Notebook.objects.for_team(notebook.team_id)
        .select_for_update(no_key=True, of=("self",))
        .select_related("team", "volume_host")
        .filter(pk=notebook.pk, deleted_at__isnull=True)
        .first()
    )
    host = _readable_host(locked) if locked is not None else None
    if locked is None or host is None or host.pk != session.host_id:
        return None
    saving = snapshot_saving(locked)
    if saving is not None:
        if not _gives_way(saving, session):
            return None
        _end(saving, NotebookSnapshot.State.FAILED, failure=SUPERSEDED)
        if saving.save_ticket is not None:
            save_abandon(ticket=saving.save_ticket, reason=SUPERSEDED)
    _, ticket, token = _begin(
        locked, host, reason=NotebookSnapshot.Reason.STOP, session=session, actor=None
    )
    return {"volume": locked.volume, "ticket_url": ticket_url(ticket), "ticket": token}


def _gives_way(saving: NotebookSnapshot, session: NotebookSession) -> bool:
    """The snapshot in flight gives way to the stop's: a scheduled or manual one, or any
    taken before ``session`` started (an earlier session's stop or move snapshot, still
    read while this session ran and changed the files: it cannot hold those changes). A
    stop or move snapshot taken since it started is left (a stop sent again takes no
    second)."""
    if saving.reason in (NotebookSnapshot.Reason.SCHEDULE, NotebookSnapshot.Reason.MANUAL):
        return True
    return session.started_at is not None and saving.created_at < session.started_at


def snapshots_forget(notebook: Notebook) -> None:
    """The notebook is deleted (inside that transaction): its snapshots go, one being
    taken given up (its ticket dead); the blobs they held are left to the datasets'
    upkeep, which collects what nothing holds."""
    saving = snapshot_saving(notebook)
    if saving is not None:
        _end(saving, NotebookSnapshot.State.FAILED, failure="The notebook was deleted.")
        if saving.save_ticket is not None:
            save_abandon(ticket=saving.save_ticket, reason="The notebook was deleted.")
    NotebookSnapshot.objects.for_team(notebook.team_id).filter(notebook=notebook).delete()


def snapshot_latest(notebook: Notebook) -> NotebookSnapshot | None:
    return (
        NotebookSnapshot.objects.for_team(notebook.team_id)
        .filter(notebook=notebook, state=NotebookSnapshot.State.READY)
        .order_by("-created_at", "-pk")
        .first()
    )


def snapshot_restore_plan(
    snapshot: NotebookSnapshot, *, volume: str, lifetime: timedelta
) -> dict[str, Any]:
    """``agent.start``'s ``restore`` option for ``snapshot`` into ``volume``: its files, each
    with a read link to its blob alone, working for ``lifetime``."""
    seconds = max(1, int(lifetime.total_seconds()))
    rows = (
        SnapshotFile.objects.for_team(snapshot.team_id)
        .filter(snapshot=snapshot)
        .order_by("path")
        .values_list("path", "size", "sha256", "mode")
    )
    urls: dict[str, str] = {}
    files = []
    for path, size, sha256, mode in rows:
        if sha256 not in urls:
            urls[sha256] = read_url(sha256, seconds=seconds)
        files.append(
            {"path": path, "size": size, "sha256": sha256, "mode": mode, "url": urls[sha256]}
        )
    return {
        "snapshot": snapshot.pk,
        "volume": volume,
        "total": sum(f["size"] for f in files),
        "files": files,
    }


@transaction.atomic
def snapshot_copy(*, team: Team, actor: User, snapshot: NotebookSnapshot, name: str) -> Notebook:
    """A new stopped notebook of ``team`` (the snapshot's notebook's template, machine type,
    image, idle policy and secrets) whose first snapshot is a COPY of ``snapshot``: the
    same files over the same blobs, no byte copied; its first start restores it. Audited."""
    require_permission(team, actor, "notebooks.manage", error=NotebookPermissionError)
    source = (
        NotebookSnapshot.objects.for_team(team)
        .select_related("notebook")
        .filter(pk=snapshot.pk)
        .first()
    )
    if source is None or source.notebook.deleted_at is not None:
        raise NotebookError("This snapshot no longer exists.")
    if source.state != NotebookSnapshot.State.READY:
        raise NotebookConflictError("Only a ready snapshot can be restored into a copy.")
    original = source.notebook
    copy = notebook_like(original, team=team, actor=actor, name=name)
    snapshot_copy_into(source, copy, actor=actor)
    audit_record(
        team=team,
        actor=actor,
        action="notebook.snapshot_copied",
        target=copy.name,
        source=original.name,
    )
    return copy


def snapshot_copy_into(
    source: NotebookSnapshot, target: Notebook, *, actor: User | None
) -> NotebookSnapshot:
    """A READY COPY snapshot of ``target`` (a notebook of the same team) holding
    ``source``'s files over the same blobs (no byte copied): its first start restores it."""
    team_id = target.team_id
    first = NotebookSnapshot.objects.for_team(team_id).create(
        team_id=team_id,
        notebook=target,
        reason=NotebookSnapshot.Reason.COPY,
        state=NotebookSnapshot.State.READY,
        copied_from=source,
        file_count=source.file_count,
        total_bytes=source.total_bytes,
        created_by=actor,
        finished_at=timezone.now(),
    )
    SnapshotFile.objects.for_team(team_id).bulk_create(
        SnapshotFile(
            team_id=team_id,
            snapshot=first,
            path=file.path,
            size=file.size,
            sha256=file.sha256,
            blob_id=file.blob_id,
            mode=file.mode,
        )
        for file in SnapshotFile.objects.for_team(team_id).filter(snapshot=source).iterator()
    )
    return first


def _end(snapshot: NotebookSnapshot, state: str, *, failure: str = "") -> None:
    """End a SAVING snapshot once (inside a transaction); ``snapshot_ended`` told on commit."""
    updated = (
        NotebookSnapshot.objects.for_team(snapshot.team_id)
        .filter(pk=snapshot.pk, state=NotebookSnapshot.State.SAVING)
        .update(state=state, failure=failure[:1000], finished_at=timezone.now())
    )
    if not updated:
        return
    snapshot.refresh_from_db()
    if state == NotebookSnapshot.State.READY:
        _volume_saved(snapshot)
        _retention(snapshot.notebook_id, snapshot.team_id)
    ended = snapshot
    transaction.on_commit(lambda: snapshot_ended(ended))


def _volume_saved(snapshot: NotebookSnapshot) -> None:
    """A STOP or MOVE snapshot READY of the volume host's copy, and the notebook has not
    started since it was taken: that copy is exactly this snapshot (``volume_saved``)."""
    if snapshot.reason not in (NotebookSnapshot.Reason.STOP, NotebookSnapshot.Reason.MOVE):
        return
    started_since = NotebookSession.objects.for_team(snapshot.team_id).filter(
        notebook_id=snapshot.notebook_id, started_at__gte=snapshot.created_at
    )
    Notebook.objects.for_team(snapshot.team_id).filter(
        pk=snapshot.notebook_id, volume_host_id=snapshot.host_id
    ).exclude(pk__in=started_since.values("notebook_id")).update(volume_saved=True)


def _retention(notebook_id: int, team_id: int) -> None:
    """Only the newest ``keep_count()`` READY snapshots of the notebook stay (and as many
    FAILED ones, for their words); the blobs the others held are left to the datasets'
    upkeep, which collects what nothing holds."""
    for state in (NotebookSnapshot.State.READY, NotebookSnapshot.State.FAILED):
        old = list(
            NotebookSnapshot.objects.for_team(team_id)
            .filter(notebook_id=notebook_id, state=state)
            .order_by("-created_at", "-pk")
            .values_list("pk", flat=True)[keep_count() :]
        )
        if old:
            NotebookSnapshot.objects.for_team(team_id).filter(pk__in=old).delete()


def _bound(ticket: SaveTicket) -> NotebookSnapshot | None:
    """The SAVING snapshot this ticket was made for (and no other), locked."""
    if ticket.source != SOURCE or ticket.source_id is None:
        return None
    return (
        NotebookSnapshot.objects.for_team(ticket.team_id)
        .select_for_update()
        .filter(pk=ticket.source_id, save_ticket_id=ticket.pk, state=NotebookSnapshot.State.SAVING)
        .first()
    )


def files_kept(ticket: SaveTicket, manifest: list[dict[str, Any]], blobs: dict[str, Blob]) -> None:
    """A snapshot's files are stored (apps.models.hooks.save_sources, in the upload's
    completion): its SnapshotFile rows (with each file's mode), its counts, READY."""
    snapshot = _bound(ticket)
    if snapshot is None:
        return
    SnapshotFile.objects.for_team(ticket.team_id).bulk_create(
        SnapshotFile(
            team_id=ticket.team_id,
            snapshot=snapshot,
            path=entry["path"],
            size=entry["size"],
            sha256=entry["sha256"],
            blob=blobs[entry["sha256"]],
            mode=int(entry.get("mode", DEFAULT_MODE)),
        )
        for entry in manifest
    )
    sent = (
        Upload.objects.for_team(ticket.team_id)
        .filter(pk=ticket.upload_id)
        .values_list("new_bytes", flat=True)
        .first()
    )
    NotebookSnapshot.objects.for_team(ticket.team_id).filter(pk=snapshot.pk).update(
        file_count=len(manifest),
        total_bytes=sum(entry["size"] for entry in manifest),
        sent_bytes=sent or 0,
    )
    _end(snapshot, NotebookSnapshot.State.READY)


def files_held(team: Team | None) -> QuerySet[Any]:
    """The blobs snapshots hold (apps.models.hooks.save_sources)."""
    if team is None:
        return SnapshotFile.objects.unscoped().values("blob_id")  # across every team
    return SnapshotFile.objects.for_team(team).values("blob_id")


def ticket_ended(ticket_id: int) -> None:
    """A snapshot's save ended (apps.models.hooks.save_sources, on commit): one that failed
    is FAILED with the save's words; one that ended READY with no upload (an empty folder)
    is READY with no files."""
    ticket = SaveTicket.objects.unscoped().filter(pk=ticket_id).first()  # by its own id
    if ticket is None:
        return
    with transaction.atomic():
        snapshot = _bound(ticket)
        if snapshot is None:
            return
        if ticket.result == SaveTicket.Result.FAILED:
            _end(snapshot, NotebookSnapshot.State.FAILED, failure=ticket.failure)
        elif ticket.finished_at is not None:
            _end(snapshot, NotebookSnapshot.State.READY)


def snapshots_dead_fail(*, now: Any = None) -> int:
    """Housekeeping (beat): every SAVING snapshot whose ticket died (gone, ended without
    telling, or expired: the host stopped answering) is FAILED. Returns how many."""
    now = now or timezone.now()
    count = 0
    saving = (
        NotebookSnapshot.objects.unscoped()  # housekeeping across every team
        .filter(state=NotebookSnapshot.State.SAVING)
        .select_related("save_ticket")
    )
    for snapshot in saving:
        ticket = snapshot.save_ticket
        if ticket is not None and ticket.finished_at is None and ticket.expires_at > now:
            continue
        with transaction.atomic():
            if ticket is not None and ticket.finished_at is None:
                save_abandon(ticket=ticket, reason=STOPPED_ANSWERING)
            failure = ticket.failure if ticket is not None and ticket.failure else STOPPED_ANSWERING
            if ticket is not None and ticket.result == SaveTicket.Result.READY:
                _end(snapshot, NotebookSnapshot.State.READY)
            else:
                _end(snapshot, NotebookSnapshot.State.FAILED, failure=failure)
            count += 1
    return count


HOST_WENT_OFFLINE = "Its host went offline while the snapshot was taken."


def snapshots_host_offline(host: Host) -> None:
    """``host`` went offline (apps.machines.hooks.host_offline, the reconciler): every
    snapshot it was reading is FAILED at once (its ticket ended), not left SAVING until the
    ticket expires; ``snapshot_ended`` wakes a start waiting on one (it restores the newest
    READY snapshot instead)."""
    saving = (
        NotebookSnapshot.objects.unscoped()  # a host's snapshots, across every team
        .filter(host=host, state=NotebookSnapshot.State.SAVING)
        .select_related("save_ticket")
    )
    for snapshot in saving:
        with transaction.atomic():
            ticket = snapshot.save_ticket
            if ticket is not None and ticket.finished_at is None:
                save_abandon(ticket=ticket, reason=HOST_WENT_OFFLINE)
            _end(snapshot, NotebookSnapshot.State.FAILED, failure=HOST_WENT_OFFLINE)


def snapshots_due(*, now: Any = None) -> int:
    """Scheduled snapshots (beat): of every running session on its notebook's volume host
    whose newest snapshot (any state; its start when none) is older than
    ``LATTICE_SNAPSHOT_EVERY`` seconds, one of reason SCHEDULE. Returns how many began."""
    now = now or timezone.now()
    every = timedelta(seconds=int(settings.LATTICE_SNAPSHOT_EVERY))
    # One query: the running sessions on their volume host whose notebook's newest snapshot
    # (any state) is old enough, or that have none.
    due = (
        NotebookSession.objects.unscoped()  # housekeeping across every team
        .filter(
            ended_at__isnull=True,
            status=Status.RUNNING,
            notebook__deleted_at__isnull=True,
            started_at__lte=now - every,
            notebook__volume_host_id=F("host_id"),
        )
        .annotate(newest=Max("notebook__snapshots__created_at"))
        .filter(Q(newest__isnull=True) | Q(newest__lte=now - every))
        .select_related("notebook", "notebook__team")
    )
    count = 0
    for session in due:
        notebook = session.notebook
        try:
            made = snapshot_take(
                notebook=notebook, reason=NotebookSnapshot.Reason.SCHEDULE, session=session
            )
        except NotebookError:
            continue  # deleted meanwhile
        count += made is not None and made.reason == NotebookSnapshot.Reason.SCHEDULE
    return count
