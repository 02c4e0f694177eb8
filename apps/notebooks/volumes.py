"""Where a notebook's files are, and what a start must do to have them (issue 20, ARCHITECTURE
decision 11: storage follows its notebook).

The contract (BRIEF20.md):

- ``Notebook.volume_host``: the host whose volume holds the newest copy of /notebooks;
  ``Notebook.volume_saved``: that copy is exactly the newest READY snapshot.
- ``preferred_host(notebook)``: the host placement tries first (its volume host), or None.
- ``files_step(session)``: decided at dispatch, once the session is placed on
  ``session.host``: None (its files are there, or it has none yet), {"restore": plan} (the
  agent restores ``snapshot_restore_plan`` before the start), or WAIT (a snapshot of the
  volume host's copy must end first: the session waits, and ``snapshot_ended`` dispatches it
  again), or raises NotebookError with what a person can do (its files are only on a host
  that is offline and no snapshot exists).
- ``files_arrived(session)``: the session's workload started on its host: that host holds
  its files now (``volume_host``), not saved.

The decision is by ``volume_host`` alone, never by "a volume of that name exists on this
host": a host the notebook left (drained, or offline while it moved) may still hold an old
volume of the same name, and a start there restores over it (the agent empties it first).
That is the fencing of files; the fencing of containers is the reconciler's (a container no
active placement knows is an orphan, removed when its host reports).

A restore after the volume host went offline carries a ``note`` beside ``restore`` (what the
person is told: from when the files are, and that later changes stayed on that host).

What moves the waiting start on lives above this module (apps.notebooks.lifecycle, which
imports it): ``files_ready``, a Hook apps.notebooks.apps registers to the dispatch.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from apps.core.hooks import Hook
from apps.machines.agent import AGENT_TIME_LIMIT
from apps.machines.models import Host
from apps.notebooks.errors import NotebookError
from apps.notebooks.models import (
    STARTING_STATUSES,
    Notebook,
    NotebookEvent,
    NotebookSession,
    NotebookSnapshot,
    Status,
)
from apps.notebooks.mounts import copy_allowance
from apps.notebooks.snapshots import (
    snapshot_latest,
    snapshot_restore_plan,
    snapshot_saving,
    snapshot_take,
)

if TYPE_CHECKING:
    from datetime import datetime

# files_step's answer when the session must wait for a snapshot to end.
WAIT = "wait"
# The phase of a start waiting for its files to be saved on their host (its NotebookEvent).
SAVING_PHASE = "saving_files"
# The phase of the notice a running notebook gets when its host is drained.
DRAINING_PHASE = "host_draining"


def _no_dispatch(session: NotebookSession) -> None:
    return None


# Dispatch a session again (apps.notebooks.lifecycle.session_dispatch, registered by
# apps.notebooks.apps): told when the snapshot a start waited for ended.
files_ready: Hook[[NotebookSession], None] = Hook("files ready", default=_no_dispatch)


def preferred_host(notebook: Notebook) -> Host | None:
    return notebook.volume_host


def preferred_host_id(notebook: Notebook) -> int | None:
    """``preferred_host``'s pk, without reading the host."""
    return notebook.volume_host_id


def restore_lifetime(total_bytes: int) -> timedelta:
    """How long a restore's read links live: as long as a start that copies that much may
    run (apps.machines.agent's limit grown by the copy's allowance)."""
    return timedelta(seconds=AGENT_TIME_LIMIT + copy_allowance(total_bytes))


def files_step(session: NotebookSession) -> dict[str, Any] | str | None:  # noqa: PLR0911 - one per case the docstring lists
    """What the start of ``session`` (placed on ``session.host``) must do to have its files.
    See the module's docstring."""
    notebook = (
        Notebook.objects.for_team(session.team_id)
        .select_related("volume_host")
        .get(pk=session.notebook_id)
    )
    holder = notebook.volume_host
    if holder is None:
        # Never started (nothing to bring), or a copy made from a snapshot: its files are
        # that snapshot's, restored wherever it lands.
        latest = snapshot_latest(notebook)
        return _restore(notebook, latest) if latest is not None else None
    if session.host_id == holder.pk:
        return None  # its files are on this host
    latest = snapshot_latest(notebook)
    if latest is not None and (notebook.volume_saved or _taken_for(latest, session)):
        return _restore(notebook, latest)  # the holder's copy is that snapshot: nothing lost
    if holder.status == Host.Status.OFFLINE:
        # Never wait on a snapshot its holder was taking: it will not end (the reconciler
        # fails it as the host goes offline), and a failed one is no reason to refuse.
        return _offline_restore(notebook, holder, latest)
    if snapshot_saving(notebook):
        return WAIT
    failed = _failed_for(notebook, session)
    if failed is not None:
        raise NotebookError(
            f"Its files could not be saved on {holder.name} to move them to "
            f"{session.host.name if session.host else 'another host'}"
            + (f" ({failed.failure})" if failed.failure else "")
            + ". Start it again to try once more; if it keeps failing, tell your administrator."
        )
    taken = snapshot_take(notebook=notebook, reason=NotebookSnapshot.Reason.MOVE, session=session)
    if taken is not None:
        return WAIT
    return _offline_restore(notebook, holder, latest)


def _offline_restore(
    notebook: Notebook, holder: Host, latest: NotebookSnapshot | None
) -> dict[str, Any]:
    """Its holder is offline (or cannot be read): what the newest snapshot holds, with the
    note saying from when; refused with no snapshot at all."""
    if latest is None:
        raise NotebookError(_offline_only(holder))
    plan = _restore(notebook, latest)
    plan["note"] = (
        f"Your files are restored from the snapshot of {_when(latest.created_at)}; changes "
        f"after it stayed on {holder.name}, which is offline."
    )
    return plan


def start_refusal(notebook: Notebook) -> str | None:
    """Why a start cannot have the notebook's files, said before it is even queued: they
    are only on a host that is offline (not saved since, and no snapshot to restore). None
    otherwise (``files_step`` decides again once it is placed)."""
    holder = notebook.volume_host
    if holder is None or holder.status != Host.Status.OFFLINE:
        return None
    if snapshot_latest(notebook) is not None:
        return None
    return _offline_only(holder)


def _offline_only(holder: Host) -> str:
    return (
        f"Its files are only on {holder.name}, which is offline, and no snapshot of them "
        f"exists. Bring {holder.name} back online and start it again: its files are there."
    )


def _restore(notebook: Notebook, snapshot: NotebookSnapshot) -> dict[str, Any]:
    return {
        "restore": snapshot_restore_plan(
            snapshot, volume=notebook.volume, lifetime=restore_lifetime(snapshot.total_bytes)
        )
    }


def _taken_for(snapshot: NotebookSnapshot, session: NotebookSession) -> bool:
    """The snapshot was taken to move this very start's files (its MOVE snapshot)."""
    return (
        snapshot.reason == NotebookSnapshot.Reason.MOVE
        and snapshot.session_id == session.pk
        and snapshot.host_id == session.notebook.volume_host_id
    )


def _failed_for(notebook: Notebook, session: NotebookSession) -> NotebookSnapshot | None:
    """The MOVE snapshot taken for this start that failed, when it is the newest snapshot."""
    newest = (
        NotebookSnapshot.objects.for_team(notebook.team_id)
        .filter(notebook=notebook)
        .order_by("-created_at", "-pk")
        .first()
    )
    if (
        newest is not None
        and newest.state == NotebookSnapshot.State.FAILED
        and newest.reason == NotebookSnapshot.Reason.MOVE
        and newest.session_id == session.pk
    ):
        return newest
    return None


def _when(moment: datetime) -> str:
    """ "14:03" today, else "3 Dec 14:03" (the installation's time zone)."""
    local = timezone.localtime(moment)
    if local.date() == timezone.localdate():
        return local.strftime("%H:%M")
    return f"{local.day} {local.strftime('%b %H:%M')}"


def restore_bytes(session: NotebookSession) -> int:
    """What the start of ``session`` restores, in bytes, as far as the database says (0 when
    its files are on its host): the reconciler's allowance for a start that copies them."""
    notebook = session.notebook
    if notebook.volume_host_id is not None and notebook.volume_host_id == session.host_id:
        return 0
    latest = snapshot_latest(notebook)
    return latest.total_bytes if latest is not None else 0


def files_waiting(session: NotebookSession) -> bool:
    """The start waits for a snapshot of its files on their host to end (not stuck)."""
    return (
        session.ended_at is None
        and session.status == Status.SCHEDULED
        and snapshot_saving(session.notebook) is not None
        and _last_phase(session) == SAVING_PHASE
    )


def files_saving(notebook: Notebook) -> bool:
    """A snapshot of the notebook is being taken."""
    return snapshot_saving(notebook) is not None


def waiting_for_files(session: NotebookSession) -> bool:
    """The session's newest event is the wait for its files (``SAVING_PHASE``)."""
    return _last_phase(session) == SAVING_PHASE


def _last_phase(session: NotebookSession) -> str | None:
    return (
        NotebookEvent.objects.for_team(session.team_id)
        .filter(session=session)
        .order_by("-pk")
        .values_list("phase", flat=True)
        .first()
    )


def waits_for(session: NotebookSession, snapshot: NotebookSnapshot) -> bool:
    """The session's start waits for ``snapshot``: its newest event is the wait, and the
    snapshot was already being taken when the (latest) wait began (a notebook has one SAVING
    snapshot at a time: the one it waits for; one taken later, a member's "Take a
    snapshot" say, is not it)."""
    last = (
        NotebookEvent.objects.for_team(session.team_id)
        .filter(session=session)
        .order_by("-pk")
        .values("phase", "created_at")
        .first()
    )
    if last is None or last["phase"] != SAVING_PHASE:
        return False
    # The wait said again in place (a second wait, for a move snapshot taken once the first
    # one ended) keeps its event's time: the session's progress time is the latest wait's.
    began = max(last["created_at"], session.progressed_at or last["created_at"])
    return snapshot.created_at <= began


def files_arrived(session: NotebookSession) -> None:
    """Its workload started on ``session.host``: the newest copy of its files is there now,
    and not saved (it runs, and changes them)."""
    if session.host_id is None:
        return
    Notebook.objects.for_team(session.team_id).filter(pk=session.notebook_id).update(
        volume_host_id=session.host_id, volume_saved=False
    )
    notebook = session.notebook
    notebook.volume_host_id = session.host_id
    notebook.volume_saved = False


def on_snapshot_ended(snapshot: NotebookSnapshot) -> None:
    """A snapshot ended (READY or FAILED): a start of its notebook that waited for it (and
    only for it: ``waits_for``) is dispatched again, once (``session_dispatch`` moves it
    off the waiting phase before it sends; ``files_ready``), and decides again
    (``files_step``: restore it, or fail with what to do)."""
    with transaction.atomic():
        waiting = [
            session
            for session in NotebookSession.objects.for_team(snapshot.team_id)
            .select_related("notebook", "host")
            .filter(
                notebook_id=snapshot.notebook_id,
                ended_at__isnull=True,
                status=Status.SCHEDULED,
                host__isnull=False,
            )
            if waits_for(session, snapshot)
        ]
    for session in waiting:
        files_ready(session)


# --- draining -------------------------------------------------------------------------------

_DRAIN_NOTICE = (
    "Its host {host} is being drained: your notebook keeps running; at its next stop it "
    "starts on another host, and its files go with it."
)


def drain_notice(host: Host) -> None:
    """Each open notebook session on ``host`` gets the notice (a NotebookEvent, which the
    notebook page shows as a banner while its host drains)."""
    for session in (
        NotebookSession.objects.unscoped()
        .filter(host=host, ended_at__isnull=True)
        .filter(status__in=[Status.RUNNING, *STARTING_STATUSES])
        .select_related("notebook")
    ):
        NotebookEvent.objects.unscoped().create(
            team_id=session.team_id,
            notebook=session.notebook,
            session=session,
            status=session.status,
            phase=DRAINING_PHASE,
            message=_DRAIN_NOTICE.format(host=host.name),
        )


def drain_banner(session: NotebookSession | None) -> str:
    """The banner the notebook page shows while its session's host drains, or ""."""
    if session is None or session.ended_at is not None or session.host is None:
        return ""
    if not session.host.drain_requested:
        return ""
    return _DRAIN_NOTICE.format(host=session.host.name)


def only_copies(host: Host) -> list[str]:
    """Notebooks whose only copy of their files is on ``host`` (their volume host, and not
    saved in a snapshot since), named "<team>/<notebook>": the host must not be removed."""
    return [
        f"{team}/{name}"
        for team, name in Notebook.objects.unscoped()
        .filter(volume_host=host, volume_saved=False, deleted_at__isnull=True)
        .order_by("team__slug", "name")
        .values_list("team__slug", "name")
    ]
