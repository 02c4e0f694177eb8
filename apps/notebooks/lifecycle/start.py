"""Starting a notebook: the start (``notebook_start``), then finding room for its session
(``session_place``, queued as ``session_place_task``) and asking the host with room to run it
(``session_dispatch``). A click that can be placed at once (a warm container, or room while
nobody waits in its type's line) is placed in its own transaction (``_place_at_once``) and
its host's task queued when that commits: the placement task's queue hop is skipped.

``notebook_start`` is a service like those in apps.notebooks.services (which offers it with
the others). It is defined here, below the stop and end of a session, because the lifecycle
calls it too: a session that ends while its notebook is still wanted running starts the next
one (apps.notebooks.lifecycle.ending). For the same reason the Celery task that places a
session sits beside its step: the start, the end of a session (the line moves on) and the
reconciler all queue it, and apps.notebooks.tasks, above them, is imported by none of them.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.audit import audit_record
from apps.core.errors import ConflictError, ServiceError
from apps.core.tenancy import team_scope
from apps.datasets.blob_urls import with_read_urls
from apps.machines.agent import AGENT_TIME_LIMIT, agent_start, spec_to_task
from apps.machines.availability import machine_type_availability, machine_type_offers
from apps.machines.models import Placement, PlacementRequest
from apps.machines.pool import pool_claimed, pool_take
from apps.machines.queue import (
    owner_free_unclaimed,
    owner_placed,
    placement_at_once,
    placement_free,
    placement_request,
    waiting_message,
)
from apps.machines.reports import workload_event
from apps.notebooks.entitlements import check_start
from apps.notebooks.errors import NotebookConflictError, NotebookError
from apps.notebooks.lifecycle.spec import session_spec
from apps.notebooks.lifecycle.status import session_set_status
from apps.notebooks.locks import lock_session, notebook_to_change
from apps.notebooks.models import Notebook, NotebookSession, Status
from apps.notebooks.mounts import copy_allowance
from apps.notebooks.selectors import open_session
from apps.notebooks.templates import CUSTOM, TemplateError, TemplateNotBuiltError, image_for
from apps.notebooks.volumes import (
    SAVING_PHASE,
    WAIT,
    files_saving,
    files_step,
    preferred_host_id,
    start_refusal,
    waiting_for_files,
)
from apps.teams.scope import team_task
from apps.teams.secrets import check_names

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team


def notebook_start(*, team: Team, actor: User, notebook: Notebook) -> NotebookSession:
    """Want it running: open a session and place it, unless one is open already.

    Called in no transaction (a member's click), a session that can be placed at once (a
    warm container is ready, or nobody waits in its type's line and a host has room) is
    placed in this transaction and its host's task queued when it commits: no hop through
    the control worker's placement task. Otherwise (or inside a caller's transaction,
    which may hold a host's lock) that task places it, as the line does."""
    at_once = not transaction.get_connection().in_atomic_block
    with transaction.atomic():
        return _notebook_start(team=team, actor=actor, notebook=notebook, at_once=at_once)


def _notebook_start(
    *, team: Team, actor: User, notebook: Notebook, at_once: bool
) -> NotebookSession:
    notebook = notebook_to_change(team, actor, notebook)
    notebook.desired_state = Notebook.Desired.RUNNING
    notebook.save(update_fields=["desired_state", "updated_at"])
    session = open_session(notebook)
    if session is not None:
        # Already on its way (or stopping for a restart: it comes back, as desired).
        return session
    if not notebook.machine_type.active:
        raise NotebookError(
            f"{notebook.machine_type.name} is no longer offered: choose another machine.",
            field="machine_type",
        )
    try:
        image = image_for(notebook.template, notebook.custom_image)
    except TemplateNotBuiltError as exc:
        raise NotebookConflictError(str(exc), field="template", code="template_not_built") from exc
    except TemplateError as exc:
        field = "custom_image" if notebook.template == CUSTOM else "template"
        raise NotebookError(str(exc), field=field) from exc
    # Its files only on a host that is offline, with no snapshot: it would start empty.
    refusal = start_refusal(notebook)
    if refusal is not None:
        raise NotebookConflictError(refusal, code="files_offline")
    # A secret it names that the team no longer has: refused now, not at the host.
    check_names(team, notebook.secrets or [])
    # The plan and spend cap (billing off: no limits): a refusal is a 402.
    check_start(team, notebook.machine_type)
    # Queued only where a ready host could run it once room frees up: else nothing would.
    if machine_type_availability(notebook.machine_type).state == "unavailable":
        raise ConflictError(
            no_host_message(notebook.machine_type.name),
            field="machine_type",
            code="no_host_offers_type",
        )
    session = NotebookSession.objects.for_team(team).create(
        team=team,
        notebook=notebook,
        machine_type=notebook.machine_type,
        template=notebook.template,
        image=image,
        started_by=actor,
        jupyter_token=secrets.token_hex(24),
    )
    session_set_status(session, Status.QUEUED, "Waiting for a machine.", phase="queued")
    audit_record(team=team, actor=actor, action="notebook.started", target=notebook.name)
    if not (at_once and _place_at_once(session)):
        on_commit_place(session)
    return session


def _place_at_once(session: NotebookSession) -> bool:
    """``session_place``'s rules for a session just opened in this transaction (which
    holds its notebook's lock and no host's): a warm container of its image and type, else
    room on a host when nobody waits in its type's line. True when placed: its host is
    asked to start it once this commits."""
    prefer = preferred_host_id(session.notebook)
    if not session.notebook.git_url:
        taken = pool_take(
            machine_type=session.machine_type,
            image=session.image,
            workload=session.workload,
            team_id=session.team_id,
            prefer_host_id=prefer,
        )
        if taken is not None:
            _placed(session, taken[0], ", in a warm container", pool=taken[1])
            return True
    placed = placement_at_once(
        machine_type=session.machine_type,
        workload=session.workload,
        team=session.team,
        prefer_host_id=prefer,
    )
    if placed is None:
        return False
    _placed(session, placed, "")
    return True


def _placed(
    session: NotebookSession,
    placement: Placement,
    how: str,
    *,
    pool: dict[str, Any] | None = None,
) -> None:
    """The session (locked) takes ``placement``; its host is asked to start it on commit."""
    session.placement = placement
    session.host = placement.host
    session_set_status(
        session,
        Status.SCHEDULED,
        f"Placed on {placement.host.name}{how}.",
        phase="placed",
        also=("placement", "host"),
    )
    transaction.on_commit(lambda: session_dispatch(session, pool=pool))


def no_host_message(name: str, *, what: str = "notebook") -> str:
    """Why a machine type cannot start here, and which types can now; ``what`` would run on
    it (a notebook, a deployment's replica)."""
    available = [
        offer.machine_type.name
        for offer in machine_type_offers()
        if offer.availability.state == "available"
    ]
    suggestion = (
        f" Available now: {', '.join(available)}."
        if available
        else " No machine type has room right now."
    )
    return (
        f"No host here offers {name}: a {what} on it would never start. "
        f"Change the {what}'s machine type." + suggestion
    )


@shared_task(name="notebooks.session_place", soft_time_limit=60, time_limit=90)
@team_task
def session_place_task(session_id: int, *, team: Team) -> None:
    """Find room for a queued session and send it to its host."""
    session = (
        NotebookSession.objects.select_related("notebook", "machine_type")
        .filter(pk=session_id)
        .first()
    )
    if session is not None:
        session_place(session)


def session_of_workload(name: str) -> int | None:
    """The session of workload "nb-<notebook>-s<session>", or None for another name."""
    try:
        return int(name.rsplit("-s", 1)[1])
    except (IndexError, ValueError):
        return None


def on_workload_placed(name: str) -> None:
    """A waiting session's request was placed by whoever moved the line: on with it now.
    If the session ended meanwhile (a stop raced the line), the room goes back."""
    owner_placed(
        name,
        NotebookSession,
        session_of_workload(name),
        waiting=Status.QUEUED,
        place=session_place_task,
    )


def _free_unclaimed(workload: str) -> None:
    """Give back the placement made for an ended session's workload that the session never
    took (it was placed after the session ended): otherwise it holds its room for nothing."""
    owner_free_unclaimed(workload, NotebookSession)


def on_commit_place(session: NotebookSession) -> None:
    """Queue ``session_place`` for the session once the transaction commits."""
    session_id, team_id = session.pk, session.team_id
    transaction.on_commit(lambda: session_place_task.delay(session_id, team_id=team_id))


def session_place(session: NotebookSession) -> None:
    """Find room for a queued session; start it there, or leave it queued with its position."""
    if session.ended_at is not None:
        _free_unclaimed(session.workload)  # placed by the line after it ended
        return
    if session.status != Status.QUEUED:
        return
    if _take_warm(session):
        return
    request = placement_request(
        machine_type=session.machine_type,
        workload=session.workload,
        team=session.team,
        prefer_host_id=preferred_host_id(session.notebook),
    )
    with transaction.atomic():
        locked = lock_session(session.pk, "machine_type")
        if locked is None:
            return
        session = locked
        placed = request.status == PlacementRequest.Status.PLACED and request.placement
        if session.ended_at is not None or session.status != Status.QUEUED:
            # Stopped while we looked for room: give the room back.
            if placed and request.placement and session.placement_id != request.placement.pk:
                placement_free(placement=request.placement)
            return
        if not placed or request.placement is None:
            # Each pass of the reconciler asks again: nothing is written while the words stay.
            message = waiting_message(session.machine_type, request)
            if message != session.notebook.status_message:
                session_set_status(session, Status.QUEUED, message, phase="queued")
            return
        _placed(session, request.placement, "")


def _take_warm(session: NotebookSession) -> bool:
    """Place the session on a warm container of its image and machine type, if one is ready
    (apps.machines.pool): the slot's reservation becomes its placement and its host claims
    the container. Not for a session already in its type's line (it keeps its turn), nor a
    notebook with a Git source (its clone runs before Jupyter)."""
    if session.notebook.git_url:
        return False
    if PlacementRequest.objects.filter(workload=session.workload).exists():
        return False
    with transaction.atomic():
        locked = lock_session(session.pk, "machine_type")
        if locked is None or locked.ended_at is not None or locked.status != Status.QUEUED:
            return False
        if locked.placement_id is not None:
            return False
        taken = pool_take(
            machine_type=locked.machine_type,
            image=locked.image,
            workload=locked.workload,
            team_id=locked.team_id,
            prefer_host_id=preferred_host_id(locked.notebook),
        )
        if taken is None:
            return False
        placement, pool_state = taken
        _placed(locked, placement, ", in a warm container", pool=pool_state)
    return True


# Marks a "failed" event the control plane itself sends (a refusal worded to be shown as it
# is): an object, never a value a host's JSON can carry, so no host can drop our advice.
OWN_WORDS = object()


def session_dispatch(session: NotebookSession, *, pool: dict[str, Any] | None = None) -> None:
    """Ask the session's host to start it (idempotent on the host: one container); with
    ``pool``, by claiming that warm container (the host starts one if the claim misses).

    Its files first (apps.notebooks.volumes ``files_step``): on its host already, or
    restored there from a snapshot (the start's ``restore`` option), or, while their host
    saves them, nothing yet: it waits (saying so), and the snapshot's end dispatches it
    again. A refusal (its files only on a host that is offline, no snapshot) fails it."""
    session = NotebookSession.objects.for_team(session.team_id).get(pk=session.pk)
    if session.ended_at is not None or session.host is None or session.status == Status.STOPPING:
        return  # stopped meanwhile: starting it now would outlive the stop
    try:
        with team_scope(session.team_id):
            files = files_step(session)
    except ServiceError as refusal:
        # Said as it is: the refusal says what to do.
        workload_event(
            session.host,
            session.workload,
            "failed",
            {"message": str(refusal), "advised": OWN_WORDS},
        )
        return
    if files == WAIT:
        _wait_for_files(session)
        return
    restore = files.get("restore") if isinstance(files, dict) else None
    note = str(files.get("note") or "") if isinstance(files, dict) else ""
    waited = waiting_for_files(session)
    if not _claim_dispatch(session, note, waited=waited):
        return  # another dispatch of this wait (a second snapshot's end) went first
    if waited and pool is None:
        # Dispatched again after it waited for its files: it keeps the warm container it
        # was placed on (the claim stays with the workload: apps.machines.pool).
        pool = pool_claimed(session.workload)
    NotebookSession.objects.for_team(session.team_id).filter(pk=session.pk).update(
        start_attempts=session.start_attempts + 1,
        progressed_at=timezone.now(),
    )
    options = (
        {
            "stream": session.notebook.stream,
            "ready_path": f"{session.base_path}api/status",
            "ready_token_env": "JUPYTER_TOKEN",
            "ready_timeout": settings.LATTICE_NOTEBOOK_START_TIMEOUT,
        }
        | ({"pool": pool} if pool else {})
        | ({"restore": restore} if restore else {})
    )
    try:
        spec = session_spec(session)
    except ServiceError as refusal:
        # A secret it names was deleted (or cannot be opened) since the start was accepted:
        # it does not start without it. It fails as a start its host refused would, with
        # the reason (the one path that ends a session on "failed").
        workload_event(session.host, session.workload, "failed", {"message": str(refusal)})
        return
    # Copying its datasets to the host first may take a while: the task's limits grow by it,
    # and the host reads their blobs through links that work as long as the task may run.
    # Its files' restore too, when it has one.
    extra = copy_allowance(
        sum(int(f[2]) for d in spec.datasets for f in d["files"])
        + (int(restore["total"]) if restore else 0)
    )
    time_limit = AGENT_TIME_LIMIT + extra
    spec = replace(spec, datasets=with_read_urls(spec.datasets, seconds=time_limit))
    agent_start.apply_async(
        args=(session.host.name, spec_to_task(spec), options),
        queue=session.host.queue,
        soft_time_limit=time_limit - 30,
        time_limit=time_limit,
    )


def _claim_dispatch(session: NotebookSession, note: str, *, waited: bool) -> bool:
    """Under the session's lock: a start that waited for its files leaves the waiting phase
    (saying where its files come from) before it is sent, so a second dispatch of the same
    wait finds nothing waiting (False) and sends no second start (compare-and-set). A
    restore after the holder went offline says ``note``. True: this dispatch sends it."""
    if not waited and not note:
        return True
    with team_scope(session.team_id), transaction.atomic():
        locked = lock_session(session.pk)
        if locked is None or locked.ended_at is not None or locked.status != Status.SCHEDULED:
            return not waited
        if waited and not waiting_for_files(locked):
            return False
        session_set_status(
            locked,
            Status.SCHEDULED,
            note or "Restoring its files here.",
            phase="restoring",
            same_step=True,
        )
    return True


def _wait_for_files(session: NotebookSession) -> None:
    """Its files are being saved on the host that holds them (a snapshot): the session
    stays scheduled, saying so, until the snapshot ends (apps.notebooks.volumes
    ``on_snapshot_ended`` dispatches it again); upkeep does not judge it stuck meanwhile.
    A snapshot that ended before the wait was recorded (a fast host, an empty volume)
    found nothing waiting: checked once the wait is committed, and dispatched at once."""
    with team_scope(session.team_id), transaction.atomic():
        locked = lock_session(session.pk, "notebook__volume_host")
        if locked is None or locked.ended_at is not None or locked.status != Status.SCHEDULED:
            return
        holder = locked.notebook.volume_host
        where = holder.name if holder is not None else "its host"
        session_set_status(
            locked,
            Status.SCHEDULED,
            f"Saving its files on {where} to bring them here.",
            phase=SAVING_PHASE,
            same_step=True,
        )
    if not files_saving(session.notebook) and waiting_for_files(session):
        session_dispatch(session)
