"""A run's way from queued to its end, through one attempt or more (owner: the engine).

A run is carried out by attempts, each one workload of kind "jb" ("jb-<attempt>"), placed,
started and found again as a deployment's replica is (apps.deployments.replicas): the
machine queue (apps.machines.queue) places it or it waits in line; once placed its host's
agent is asked to start it with ``"until": "exit"`` (apps.machines.agent): "ready" as soon
as the process runs, then "exited" with its status, or "vanished" when its container went
away behind our back. A non-zero exit fails the run (never tried again); a lost attempt
(vanished, or its placement freed as lost by the machines reconciler: host offline, the
workload missing from its reports) is tried again while the run has attempts left and its
deadline allows. Exit 0 hands the run to apps.jobs.outputs, which says when it is done.
Each attempt ends once (``attempt_end``: its placement freed, its container removed); the
run ends once (``run_end``: its volumes removed, the job's next queued run started).

Locks: the run's row, then its attempt's (every path takes them in that order).

CONTRACT (foundation; the engine helper fills it in):

- ``run_create(job, *, trigger, actor, definition=None, rerun_of=None) -> Run``: a new run of
  ``job`` (its definition copied now, or ``definition`` for an edited re-run), queued; once
  the transaction commits, started if the job's concurrency allows (else it waits, saying
  so), as a first attempt.
- ``run_cancel(run, *, actor)``: SIGTERM, the job's grace period, then SIGKILL; the run ends
  "cancelled". A queued run ends at once.
- ``on_attempt_event(host, workload, event, data)``: what an attempt's agent says (the "jb"
  workload kind): progress, started, ready (the process runs), exited (with exit_code),
  vanished (its container is gone), failed (it could not start), stopped.
- ``workload_stream(host, workload) -> str | None``: the run's stream when that attempt is
  placed on that host.
- ``on_workload_placed(workload)``: a waiting attempt was placed by the line: dispatch it.
- ``runs_tick() -> dict``: the beat's pass (jobs.tick): maximum run times, cancels nobody
  confirmed, lost attempts (tried again while max_attempts allows), queued runs started.
- ``run_outputs_done(run_id, *, ok, message="")``: told by apps.jobs.outputs once a
  succeeded attempt's outputs are saved (or could not be): the run ends, its container goes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery import shared_task
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.accounts.workload import workload_tokens_expire, workload_tokens_revoke
from apps.core.errors import ServiceError
from apps.core.stream import stream_publish
from apps.core.tenancy import team_scope
from apps.datasets.blob_urls import with_read_urls
from apps.jobs import outputs, spec
from apps.jobs.errors import JobConflictError
from apps.jobs.models import OPEN_RUN_STATUSES, Attempt, Job, Run
from apps.machines.agent import AGENT_TIME_LIMIT, agent_start, agent_stop, spec_to_task
from apps.machines.inbox import said_moment
from apps.machines.models import Host, MachineType, PlacementRequest
from apps.machines.queue import (
    owner_free_unclaimed,
    owner_placed,
    owner_placement_request,
    owner_take_placement,
    placement_free,
)
from apps.machines.scheduler import host_can_run
from apps.notebooks import entitlements
from apps.notebooks.mounts import copy_allowance
from apps.notebooks.selectors import volume_host_id
from apps.teams.scope import team_task

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team

logger = logging.getLogger(__name__)

RS = Run.Status
AS = Attempt.Status
END = Attempt.EndReason
# An attempt stopped on purpose ends the run so.
_STOPPED_RUN: dict[str, str] = {END.CANCELLED: RS.CANCELLED, END.TIMED_OUT: RS.TIMED_OUT}
# How long past its grace a stop may go unconfirmed before the run ends anyway (the host
# is silent, or its agent lost the task): its placement is freed then too.
STOP_PATIENCE = timedelta(seconds=120)
# How long an attempt waits in line before the tick asks the line again (one missed word).
PLACE_AGAIN_AFTER = timedelta(seconds=30)
# A start its host said nothing of for this long was lost with the agent (a restart): sent
# again (the agent's start is idempotent), at most START_TRIES times in all.
START_AGAIN_AFTER = timedelta(seconds=AGENT_TIME_LIMIT + 60)
START_TRIES = 3
# The most rows one tick handles of each kind (the next tick takes the rest).
TICK_BATCH = 200


def attempt_of_workload(name: str) -> int | None:
    """The attempt of workload "jb-<attempt>", or None for another name."""
    kind, _, rest = name.partition("-")
    return int(rest) if kind == "jb" and rest.isdigit() else None


# --- status and the stream ------------------------------------------------------------------


def run_published(run: Run, attempt: Attempt | None = None) -> None:
    """Tell the run's viewers its status, once the transaction commits."""
    body = {
        "type": "run",
        "run": run.pk,
        "number": run.number,
        "status": run.status,
        "message": run.status_message,
        "exit_code": run.exit_code,
        "attempt": attempt.number if attempt is not None else None,
        "ended_at": run.ended_at.isoformat() if run.ended_at else None,
        "at": timezone.now().isoformat(),
    }
    stream = run.stream
    transaction.on_commit(lambda: stream_publish(stream, body))


def run_set_status(
    run: Run, status: str, message: str = "", attempt: Attempt | None = None
) -> None:
    if run.ended_at is not None:
        return
    if run.status == status and run.status_message == message[:1000]:
        return
    run.status = status
    run.status_message = message[:1000]
    run.save(update_fields=["status", "status_message"])
    run_published(run, attempt)


def _attempt_status(attempt: Attempt, status: str, message: str = "") -> None:
    attempt.status = status
    attempt.status_message = message[:1000]
    attempt.progressed_at = timezone.now()
    attempt.save(update_fields=["status", "status_message", "progressed_at"])


def _lock_run(run_id: int, team: Team | int) -> Run | None:
    return (
        Run.objects.for_team(team)
        .select_for_update(of=("self",), no_key=True)
        .select_related("job")
        .filter(pk=run_id)
        .first()
    )


def _lock_attempt(attempt_id: int, team: Team | int) -> Attempt | None:
    return (
        Attempt.objects.for_team(team)
        .select_for_update(of=("self",), no_key=True)
        .select_related("host", "placement", "machine_type")
        .filter(pk=attempt_id)
        .first()
    )


def _open_attempt(run: Run) -> Attempt | None:
    """The run's attempt that has not ended (at most one), locked."""
    found = (
        Attempt.objects.for_team(run.team_id)
        .filter(run=run, ended_at__isnull=True)
        .order_by("-number")
        .values_list("pk", flat=True)
        .first()
    )
    return _lock_attempt(found, run.team_id) if found is not None else None


# --- making runs, and starting them in turn -------------------------------------------------


def job_definition(job: Job) -> dict[str, Any]:
    """The job's definition as it is now: what a run copies (Job.DEFINITION_FIELDS)."""
    return {name: getattr(job, name) for name in Job.DEFINITION_FIELDS}


def run_create(
    job: Job,
    *,
    trigger: str,
    actor: User | None,
    definition: dict[str, Any] | None = None,
    rerun_of: Run | None = None,
    token_not_after: datetime | None = None,
) -> Run:
    """A new queued run of ``job``; once the transaction commits it starts if the job's
    concurrency allows, else it waits (saying for which run)."""
    with transaction.atomic():
        # The job's row numbers its runs, one at a time.
        Job.objects.for_team(job.team_id).select_for_update().filter(pk=job.pk).first()
        last = Run.objects.for_team(job.team_id).filter(job=job).aggregate(n=Max("number"))["n"]
        run = Run.objects.for_team(job.team_id).create(
            team_id=job.team_id,
            job=job,
            number=(last or 0) + 1,
            status=RS.QUEUED,
            status_message="Queued.",
            trigger=trigger,
            triggered_by=actor,
            rerun_of=rerun_of,
            token_not_after=token_not_after,
            definition=dict(definition if definition is not None else job_definition(job)),
        )
        run_published(run)
        job_id, team_id = job.pk, job.team_id
        transaction.on_commit(lambda: start_queued_task.delay(job_id, team_id=team_id))
    return run


@shared_task(name="jobs.start_queued", soft_time_limit=60, time_limit=90)
@team_task
def start_queued_task(job_id: int, *, team: Team) -> None:
    start_queued(job_id, team)


def _waiting_words(active: list[Run]) -> str:
    numbers = [str(r.number) for r in active]
    if len(numbers) == 1:
        return f"Waiting for run {numbers[0]} of this job."
    return f"Waiting for runs {', '.join(numbers[:-1])} and {numbers[-1]} of this job."


def start_queued(job_id: int, team: Team | int) -> int:
    """Start the job's queued runs, oldest first, while its concurrency allows; the rest say
    which runs they wait for. How many started."""
    started = 0
    with transaction.atomic():
        job = Job.objects.for_team(team).select_for_update().filter(pk=job_id).first()
        if job is None:
            return 0
        runs = list(
            Run.objects.for_team(team)
            .select_for_update(of=("self",), no_key=True)
            .select_related("job")
            .filter(job_id=job_id, status__in=OPEN_RUN_STATUSES)
            .order_by("number")
        )
        active = [r for r in runs if r.status != RS.QUEUED]
        for run in (r for r in runs if r.status == RS.QUEUED):
            if job.deleted_at is not None:
                run_end(run, RS.CANCELLED, "Cancelled: the job was deleted.")
                continue
            if len(active) >= max(job.concurrency, 1):
                run_set_status(run, RS.QUEUED, _waiting_words(active))
                continue
            try:
                with transaction.atomic():
                    _run_begin(run)
            except ServiceError as exc:
                run_end(run, RS.FAILED, f"It could not start: {exc!s}")
                continue
            active.append(run)
            started += 1
    return started


def _run_begin(run: Run) -> None:
    """The run's first attempt, once its plan allows the start (a ServiceError if not)."""
    machine_type = MachineType.objects.get(pk=run.definition["machine_type_id"])
    entitlements.check_start(run.team, machine_type)
    attempt_new(run)


def attempt_new(run: Run, *, why: str = "") -> Attempt:
    """The run's next attempt, on its way to a host once the transaction commits."""
    number = Attempt.objects.for_team(run.team_id).filter(run=run).count() + 1
    attempt = Attempt.objects.for_team(run.team_id).create(
        team_id=run.team_id,
        run=run,
        number=number,
        machine_type_id=run.definition["machine_type_id"],
        status=AS.PLACING,
        status_message="Waiting for a machine.",
    )
    run_set_status(run, RS.PLACING, f"{why} Waiting for a machine.".strip(), attempt)
    attempt_id, team_id = attempt.pk, attempt.team_id
    transaction.on_commit(lambda: attempt_place_task.delay(attempt_id, team_id=team_id))
    return attempt


@shared_task(name="jobs.attempt_place", soft_time_limit=60, time_limit=90)
@team_task
def attempt_place_task(attempt_id: int, *, team: Team) -> None:
    """Find room for an attempt waiting to be placed and send it to its host."""
    attempt = Attempt.objects.for_team(team).filter(pk=attempt_id).first()
    if attempt is not None:
        attempt_place(attempt)


def attempt_place(attempt: Attempt) -> None:
    """Find room for a placing attempt; start it there, or leave it waiting with its place.
    A run from a notebook's files goes to the host holding them (the volume it copies)."""
    host_id = None
    if attempt.status == AS.PLACING and attempt.ended_at is None:
        host_id, refusal = _files_host(attempt)
        if refusal:
            _fail_start(attempt, refusal)
            return
    request = owner_placement_request(attempt, waiting=AS.PLACING, host_id=host_id)
    if request is None:
        return
    with transaction.atomic():
        run = _lock_run(attempt.run_id, attempt.team_id)
        locked = _lock_attempt(attempt.pk, attempt.team_id)
        if run is None or locked is None:
            return
        attempt = locked
        taken = owner_take_placement(attempt, request, waiting=AS.PLACING)
        if isinstance(taken, str):
            if taken != run.status_message:
                _attempt_status(attempt, AS.PLACING, taken)
                run_set_status(run, RS.PLACING, taken, attempt)
            return
        if taken is None:
            return
        message = f"Placed on {taken.host.name}."
        _attempt_status(attempt, AS.STARTING, message)
        run_set_status(run, RS.STARTING, message, attempt)
        attempt_id, team_id = attempt.pk, attempt.team_id
        transaction.on_commit(lambda: attempt_dispatch(attempt_id, team_id))


def _files_host(attempt: Attempt) -> tuple[int | None, str]:
    """The host a notebook-source run must be placed on (its notebook's volume is there
    only), and why it cannot be, if it cannot run the attempt's machine type now."""
    definition = attempt.run.definition
    if definition.get("source") != Job.Source.NOTEBOOK or not definition.get("notebook_id"):
        return None, ""
    host_id = volume_host_id(attempt.team_id, int(definition["notebook_id"]))
    if host_id is None:
        return None, ""  # it never ran: there are no files to follow
    host = Host.objects.get(pk=host_id)
    if not host_can_run(host, attempt.machine_type):
        return None, (
            f"The notebook's files are on host {host.name}, which cannot run "
            f"{attempt.machine_type.name} now."
        )
    return host_id, ""


def on_workload_placed(workload: str) -> None:
    """A waiting attempt's request was placed by whoever moved the line: on with it now."""
    owner_placed(
        workload,
        Attempt,
        attempt_of_workload(workload),
        waiting=AS.PLACING,
        place=attempt_place_task,
    )


def _free_unclaimed(workload: str) -> None:
    """Give back a placement made for an ended attempt that never took it."""
    owner_free_unclaimed(workload, Attempt)


def attempt_dispatch(attempt_id: int, team_id: int) -> None:
    """Ask the attempt's host to start it (idempotent on the host: one workload). What
    cannot start (a secret gone, a template not built here) fails the run with its reason."""
    with team_scope(team_id):
        attempt = (
            Attempt.objects.for_team(team_id)
            .select_related("run", "run__job", "run__team", "host", "placement")
            .filter(pk=attempt_id)
            .first()
        )
        if attempt is None or attempt.ended_at is not None or attempt.host is None:
            return
        if attempt.status != AS.STARTING:
            return
        Attempt.objects.for_team(team_id).filter(pk=attempt.pk).update(
            start_attempts=attempt.start_attempts + 1, progressed_at=timezone.now()
        )
        try:
            workload, options = spec.attempt_spec(attempt)
        except ServiceError as exc:
            _fail_start(attempt, str(exc))
            return
        extra = copy_allowance(sum(int(f[2]) for d in workload.datasets for f in d["files"]))
        time_limit = AGENT_TIME_LIMIT + extra
        workload = replace(workload, datasets=with_read_urls(workload.datasets, seconds=time_limit))
        host = attempt.host
        agent_start.apply_async(
            args=(host.name, spec_to_task(workload), options),
            queue=host.queue,
            soft_time_limit=time_limit - 30,
            time_limit=time_limit,
        )


def _fail_start(attempt: Attempt, message: str) -> None:
    with transaction.atomic():
        run = _lock_run(attempt.run_id, attempt.team_id)
        locked = _lock_attempt(attempt.pk, attempt.team_id)
        if run is None or locked is None or locked.ended_at is not None:
            return
        attempt_end(locked, END.FAILED, message=message)
        run_end(run, RS.FAILED, f"It could not start: {message}")


# --- what the agent says --------------------------------------------------------------------


def workload_stream(host: str, workload: str) -> str | None:
    """The stream workload ``workload``'s output goes to (its run's), if ``host`` runs it."""
    attempt_id = attempt_of_workload(workload)
    found = (
        # By the workload's own id and its host: the reporting host's own attempt only.
        Attempt.objects.unscoped()
        .filter(pk=attempt_id, host__name=host)
        .values_list("run_id", flat=True)
        .first()
        if attempt_id is not None
        else None
    )
    return f"job-run-{found}" if found is not None else None


# What the runner says of the commit it fetched (apps.jobs.sources), this attempt's or an
# earlier one's: a full commit id, 40 hex characters, nothing else on the line.
_COMMIT_LINE = re.compile(r"lattice: commit ([0-9a-f]{40})(?: \(fetched by an earlier attempt\))?")


def workload_lines(host: str, workload: str, lines: list[str]) -> None:
    """A frame of workload ``workload``'s output, from the host it is placed on: the Git
    commit the runner fetched becomes its run's ``git_commit`` (the first one said; a run
    of a Git source only, the line coming from the attempt's own host)."""
    commits = [m.group(1) for line in lines if (m := _COMMIT_LINE.fullmatch(line.strip()))]
    attempt_id = attempt_of_workload(workload)
    if not commits or attempt_id is None:
        return
    found = (
        # By the workload's own id and its host: the reporting host's own attempt only.
        Attempt.objects.unscoped()
        .filter(pk=attempt_id, host__name=host)
        .values("team_id", "run_id")
        .first()
    )
    if found is None:
        return
    with team_scope(found["team_id"]):
        Run.objects.for_team(found["team_id"]).filter(
            pk=found["run_id"], git_commit="", definition__source="git"
        ).update(git_commit=commits[0])


def on_attempt_event(host: str, workload: str, event: str, data: dict[str, Any]) -> None:
    """An agent's event for workload "jb-<attempt>", believed only from its own host."""
    attempt_id = attempt_of_workload(workload)
    found = (
        # By the workload's own id: which team's it is, to work in that team's scope.
        Attempt.objects.unscoped().filter(pk=attempt_id).values("team_id", "run_id").first()
        if attempt_id is not None
        else None
    )
    handler = _HANDLERS.get(event)
    if found is None or handler is None:
        logger.info("event %s for %s: no such attempt, or not an attempt's event", event, workload)
        return
    with team_scope(found["team_id"]), transaction.atomic():
        run = _lock_run(found["run_id"], found["team_id"])
        attempt = _lock_attempt(attempt_id, found["team_id"]) if attempt_id else None
        if run is None or attempt is None:
            return
        if attempt.host is None or attempt.host.name != host:
            # Only the host it was sent to speaks for an attempt (hosts run strangers' code).
            logger.warning("event %s for %s from %s, not its host: ignored", event, workload, host)
            return
        if attempt.ended_at is not None:
            return
        handler(run, attempt, data)


_PHASE_WORDS = {
    "copying": "Copying files to the machine.",
    "building": "Building the image on the machine.",
}


def _on_progress(run: Run, attempt: Attempt, data: dict[str, Any]) -> None:
    if attempt.status != AS.STARTING:
        return
    phase = str(data.get("phase", ""))
    if phase == "pulling":
        percent = data.get("percent")
        number = int(percent) if isinstance(percent, int) and 0 <= percent <= 100 else 0  # noqa: PLR2004
        message = f"Downloading the image: {number}%."
    elif phase in _PHASE_WORDS:
        message = _PHASE_WORDS[phase]
    else:
        return
    _attempt_status(attempt, AS.STARTING, message)
    run_set_status(run, RS.STARTING, message, attempt)


# How far before its "started" message a host may say its workload's process started: the
# message is sent right after the start (an event queue's delay at most); a time further
# back, or ahead of now, is a wrong clock or a lie, and the message's arrival counts.
STARTED_EARLIEST = timedelta(minutes=2)


def _started_moment(value: Any, attempt: Attempt) -> datetime:
    """When the attempt's process started: the runtime's own time where the host says one
    within reason (see STARTED_EARLIEST; never before the attempt was asked for, nor before
    it was placed: the wait in the line is not the host's to bill), else now."""
    now = timezone.now()
    placed = attempt.placement.created_at if attempt.placement is not None else None
    bounds = (now - STARTED_EARLIEST, attempt.requested_at, placed)
    return said_moment(value, earliest=max(b for b in bounds if b is not None)) or now


def _on_started(run: Run, attempt: Attempt, data: dict[str, Any]) -> None:
    now = _started_moment(data.get("started_at"), attempt)
    if attempt.started_at is None:
        attempt.started_at = now
        state = data.get("state")
        attempt.runtime_state = state if isinstance(state, dict) else {}
        attempt.save(update_fields=["started_at", "runtime_state"])
    if run.started_at is None:
        # The maximum run time counts from the first start, every attempt together.
        run.started_at = now
        timeout = int(run.definition.get("timeout_seconds") or 0)
        run.deadline_at = now + timedelta(seconds=timeout) if timeout else None
        # The plan's session cap bounds a run as it bounds a notebook session.
        cap = entitlements.run_limit(run.team_id)
        if cap is not None and (run.deadline_at is None or now + cap < run.deadline_at):
            run.deadline_at = now + cap
        run.save(update_fields=["started_at", "deadline_at"])
    if run.deadline_at is not None:
        # Its deadline is known: its workload token ends there (apps.accounts.workload).
        workload_tokens_expire(workloads=[attempt.workload], at=run.deadline_at)
    if attempt.status == AS.STARTING:
        _attempt_status(attempt, AS.STARTING, "The container is up.")
        run_set_status(run, RS.STARTING, "The container is up.", attempt)


def _on_ready(run: Run, attempt: Attempt, data: dict[str, Any]) -> None:
    if attempt.status not in (AS.PLACING, AS.STARTING):
        return
    if attempt.started_at is None:
        _on_started(run, attempt, data)
    message = "Running." if attempt.number == 1 else f"Running (attempt {attempt.number})."
    _attempt_status(attempt, AS.RUNNING, message)
    run_set_status(run, RS.RUNNING, message, attempt)


def _moment(value: Any, attempt: Attempt) -> datetime:
    """A host's time of an exit, kept between the attempt's start and now."""
    now = timezone.now()
    try:
        moment = datetime.fromtimestamp(float(value), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return now
    return max(min(moment, now), attempt.started_at or now)


def _on_exited(run: Run, attempt: Attempt, data: dict[str, Any]) -> None:
    if attempt.status == AS.EXITED:
        return  # told again (a report after an agent restart): taken once
    code = data.get("exit_code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else -1
    attempt.exit_code = code
    attempt.finished_at = _moment(data.get("finished_at"), attempt)
    attempt.save(update_fields=["exit_code", "finished_at"])
    if attempt.status == AS.STOPPING:
        _end_stopping(run, attempt)
        return
    _attempt_status(attempt, AS.EXITED, f"Exited with status {code}.")
    run.exit_code = code
    run.save(update_fields=["exit_code"])
    if code != 0:
        if _failed_notebook_kept(run, attempt):
            run_set_status(run, RS.RUNNING, "Saving the executed notebook.", attempt)
            return
        attempt_end(attempt, END.EXITED)
        run_end(run, RS.FAILED, _exited_message(code), attempt)
        return
    try:
        # It marks the run's outputs "saving" itself when it asked the host for them.
        saving = outputs.outputs_collect(run, attempt)
    except ServiceError as exc:
        _outputs_end(run, attempt, ok=False, message=str(exc))
        return
    if saving:
        run_set_status(run, RS.RUNNING, "Saving outputs.", attempt)
        return
    attempt_end(attempt, END.EXITED)
    run_end(run, RS.SUCCEEDED, "Succeeded.", attempt)


def _exited_message(code: int) -> str:
    return f"The command exited with status {code}."


def _failed_notebook_kept(run: Run, attempt: Attempt) -> bool:
    """A notebook that failed (a cell raised) still leaves its executed notebook, the error
    in it, as the run's result (never /outputs): True while that is being saved; the run
    then fails with its exit status (``_outputs_end``)."""
    if run.definition.get("entrypoint") != Job.Entrypoint.NOTEBOOK:
        return False
    try:
        return outputs.outputs_collect(run, attempt, result_only=True)
    except ServiceError as exc:
        run.outputs_state, run.outputs_message = Run.Outputs.FAILED, str(exc)[:1000]
        run.save(update_fields=["outputs_state", "outputs_message"])
        return False


def _on_vanished(run: Run, attempt: Attempt, data: dict[str, Any]) -> None:
    if attempt.status == AS.STOPPING:
        _end_stopping(run, attempt)
    elif attempt.status != AS.EXITED:
        attempt_end(attempt, END.LOST, message="Its container went away.")
        retry_or_lose(run, attempt, "its container went away")


def _on_failed(run: Run, attempt: Attempt, data: dict[str, Any]) -> None:
    if attempt.status == AS.STOPPING:
        _end_stopping(run, attempt)
        return
    message = str(data.get("message", ""))[:900] or "It failed to start."
    attempt_end(attempt, END.FAILED, message=message)
    run_end(run, RS.FAILED, f"It could not start: {message}", attempt)


def _on_stopped(run: Run, attempt: Attempt, data: dict[str, Any]) -> None:
    if attempt.status == AS.STOPPING:
        _end_stopping(run, attempt)


_HANDLERS = {
    "progress": _on_progress,
    "started": _on_started,
    "ready": _on_ready,
    "exited": _on_exited,
    "vanished": _on_vanished,
    "failed": _on_failed,
    "stopped": _on_stopped,
}


def retry_or_lose(run: Run, attempt: Attempt, why: str) -> None:
    """After a lost attempt: another one while the run has attempts left and time before its
    deadline (and nobody cancelled it), else the run is lost."""
    if run.cancel_requested_at is not None:
        run_end(run, RS.CANCELLED, "Cancelled.", attempt)
        return
    allowed = int(run.definition.get("max_attempts") or 1)
    in_time = run.deadline_at is None or timezone.now() < run.deadline_at
    if attempt.number < allowed and in_time:
        attempt_new(run, why=f"Attempt {attempt.number} was lost ({why}): trying again.")
        return
    left = "no attempts left" if in_time else "no time left"
    run_end(run, RS.LOST, f"Lost: {why}; {left}.", attempt)


# --- stopping and ending --------------------------------------------------------------------


def run_cancel(run: Run, *, actor: User | None, why: str = "") -> Run:
    """Cancel an open run: a queued one (or one still waiting for a machine) ends at once;
    a started one gets SIGTERM, its grace period, then SIGKILL, and ends "cancelled" when
    its host says it stopped. ``why`` says so where nobody asked (billing's sweep)."""
    with transaction.atomic():
        locked = _lock_run(run.pk, run.team_id)
        if locked is None or locked.ended_at is not None:
            raise JobConflictError(f"Run {run.number} has ended already.")
        run = locked
        if run.outputs_state == Run.Outputs.SAVING:
            # Its command has finished: ending it now would drop the saves under way (their
            # tickets open, the container and volumes they read removed).
            raise JobConflictError(
                f"Run {run.number} has finished its work; its outputs are being saved."
            )
        if run.cancel_requested_at is None:
            run.cancel_requested_at = timezone.now()
            run.cancelled_by = actor
            run.save(update_fields=["cancel_requested_at", "cancelled_by"])
        who = f" by {actor.email}" if actor is not None else ""
        attempt = _open_attempt(run)
        if attempt is None:
            run_end(run, RS.CANCELLED, why or f"Cancelled{who} before it started.")
        else:
            attempt_stop(run, attempt, END.CANCELLED, why or f"Cancelled{who}.")
    return run


def attempt_stop(run: Run, attempt: Attempt, reason: str, message: str) -> None:
    """Stop the open attempt on purpose (``reason``: cancelled, timed out): at once if it has
    no host yet (or its process already exited), else SIGTERM, the job's grace, SIGKILL."""
    if attempt.status == AS.STOPPING:
        return
    if attempt.placement is None or attempt.status == AS.EXITED:
        PlacementRequest.objects.filter(
            workload=attempt.workload, status=PlacementRequest.Status.WAITING
        ).update(status=PlacementRequest.Status.CANCELLED)
        attempt_end(attempt, reason, message=message)
        run_end(run, _STOPPED_RUN[reason], message, attempt)
        return
    grace = int(run.definition.get("grace_seconds") or 0)
    attempt.end_reason = reason  # what it ends as once its host says it stopped
    attempt.save(update_fields=["end_reason"])
    words = f"{message} Stopping: SIGTERM, then {grace} s to finish."
    _attempt_status(attempt, AS.STOPPING, words)
    run_set_status(run, run.status, words, attempt)
    _stop_on_host(attempt, grace=grace)


def _end_stopping(run: Run, attempt: Attempt) -> None:
    """An attempt stopped on purpose has stopped (or gone): it ends as it was meant to."""
    reason = attempt.end_reason or END.CANCELLED
    message = attempt.status_message.split(" Stopping:")[0]
    attempt_end(attempt, reason, stopped=True)
    run_end(run, _STOPPED_RUN.get(reason, RS.CANCELLED), message, attempt)


def attempt_end(
    attempt: Attempt,
    reason: str,
    *,
    at: datetime | None = None,
    message: str = "",
    stopped: bool = False,
) -> None:
    """Close the attempt (once): its end, its billing's end (``finished_at``: the exit, the
    last time it was seen, or now), its workload token revoked, its placement freed, its
    container removed (unless ``stopped``: its host already did)."""
    if attempt.ended_at is not None:
        return
    workload_tokens_revoke(workloads=[attempt.workload])
    now = timezone.now()
    finished = attempt.finished_at or at or now
    attempt.finished_at = max(finished, attempt.started_at) if attempt.started_at else finished
    attempt.ended_at = now
    attempt.end_reason = reason
    attempt.save(update_fields=["finished_at", "ended_at", "end_reason"])
    _attempt_status(attempt, AS.ENDED, message or attempt.status_message)
    placement = attempt.placement
    if placement is not None and placement.active:
        placement_free(
            placement=placement,
            reason="lost" if reason == END.LOST else "released",
            at=attempt.finished_at,
        )
    if not stopped:
        _stop_on_host(attempt)


def _stop_on_host(
    attempt: Attempt, *, volumes: list[str] | None = None, grace: int | None = None
) -> None:
    """Ask the attempt's host, once the transaction commits, to stop and remove its
    container (with ``grace``: SIGTERM, that long, SIGKILL), then remove ``volumes``."""
    if attempt.host is None:
        return
    queue = attempt.host.queue
    args = (attempt.host.name, attempt.workload, attempt.runtime_state or None, volumes)
    # The task's own limits (AGENT's 90/120 s) are stretched by the grace it waits.
    soft, hard = (grace or 0) + 90, (grace or 0) + 120
    transaction.on_commit(
        lambda: agent_stop.apply_async(
            args=args,
            kwargs={"grace": grace},
            queue=queue,
            soft_time_limit=soft,
            time_limit=hard,
        )
    )


def run_end(run: Run, status: str, message: str, attempt: Attempt | None = None) -> None:
    """Close the run (once): its status and end; its attempts' workload tokens revoked; its
    volumes removed from every host its attempts ran on; the job's next queued run started."""
    if run.ended_at is not None:
        return
    run.ended_at = timezone.now()
    run.status = status
    run.status_message = message[:1000]
    run.save(update_fields=["ended_at", "status", "status_message"])
    run_published(run, attempt)
    # Each attempt's token went with its end; one whose end is still to come goes now.
    workload_tokens_revoke(
        workloads=[a.workload for a in Attempt.objects.for_team(run.team_id).filter(run=run)]
    )
    volumes = [spec.workspace_volume(run), spec.outputs_volume(run)]
    last_on_host: dict[int, Attempt] = {}
    for each in (
        Attempt.objects.for_team(run.team_id)
        .filter(run=run, host__isnull=False)
        .select_related("host")
        .order_by("number")
    ):
        assert each.host_id is not None  # noqa: S101 - filtered
        last_on_host[each.host_id] = each
    for each in last_on_host.values():
        # Its container goes first, then the volumes it used (one task: in that order).
        _stop_on_host(each, volumes=volumes)
    job_id, team_id = run.job_id, run.team_id
    transaction.on_commit(lambda: start_queued_task.delay(job_id, team_id=team_id))


def _outputs_end(run: Run, attempt: Attempt | None, *, ok: bool, message: str) -> None:
    run.outputs_state = Run.Outputs.SAVED if ok else Run.Outputs.FAILED
    run.outputs_message = message[:1000]
    run.save(update_fields=["outputs_state", "outputs_message"])
    if attempt is not None:
        attempt_end(attempt, END.EXITED)
    if run.exit_code:
        # A failed notebook's executed notebook was being saved: failed all the same.
        run_end(run, RS.FAILED, _exited_message(run.exit_code), attempt)
    elif ok:
        run_end(run, RS.SUCCEEDED, "Succeeded.", attempt)
    else:
        run_end(run, RS.FAILED, f"The outputs could not be saved: {message}", attempt)


def run_outputs_done(run_id: int, *, ok: bool, message: str = "") -> None:
    """The outputs of the run's exited attempt are saved (or could not be): the run ends."""
    found = Run.objects.unscoped().filter(pk=run_id).values("team_id").first()
    if found is None:
        return
    with team_scope(found["team_id"]), transaction.atomic():
        run = _lock_run(run_id, found["team_id"])
        if run is None or run.ended_at is not None:
            return
        _outputs_end(run, _open_attempt(run), ok=ok, message=message)


# --- the beat's pass ------------------------------------------------------------------------


def runs_tick() -> dict[str, int]:
    """One pass (jobs.tick): maximum run times, stops nobody confirmed, lost attempts (tried
    again while max_attempts allows), attempts still in line, queued runs started."""
    counts = {
        "timed_out": 0,
        "stop_given_up": 0,
        "lost": 0,
        "placed_again": 0,
        "sent_again": 0,
        "started": 0,
    }
    now = timezone.now()
    # Across teams in this sweep, each limited by its own condition; every row is then
    # handled in its own team's scope.
    for run_id, team_id in (
        Run.objects.unscoped()
        .filter(status__in=OPEN_RUN_STATUSES, deadline_at__lt=now, ended_at__isnull=True)
        .values_list("pk", "team_id")[:TICK_BATCH]
    ):
        counts["timed_out"] += _time_out(run_id, team_id)
    for attempt_id, run_id, team_id in (
        Attempt.objects.unscoped()
        .filter(ended_at__isnull=True, status=AS.STOPPING)
        .values_list("pk", "run_id", "team_id")[:TICK_BATCH]
    ):
        counts["stop_given_up"] += _stop_given_up(attempt_id, run_id, team_id, now)
    for attempt_id, run_id, team_id in (
        Attempt.objects.unscoped()
        .filter(ended_at__isnull=True, placement__active=False)
        .values_list("pk", "run_id", "team_id")[:TICK_BATCH]
    ):
        counts["lost"] += _lost(attempt_id, run_id, team_id)
    for attempt in (
        Attempt.objects.unscoped()
        .filter(ended_at__isnull=True, status=AS.PLACING, progressed_at__lt=now - PLACE_AGAIN_AFTER)
        .select_related("machine_type", "team")[:TICK_BATCH]
    ):
        with team_scope(attempt.team_id):
            attempt_place(attempt)
        counts["placed_again"] += 1
    for attempt_id, team_id in (
        Attempt.objects.unscoped()
        .filter(
            ended_at__isnull=True,
            status=AS.STARTING,
            started_at__isnull=True,
            progressed_at__lt=now - START_AGAIN_AFTER,
        )
        .values_list("pk", "team_id")[:TICK_BATCH]
    ):
        counts["sent_again"] += _start_again(attempt_id, team_id)
    for job_id, team_id in (
        Run.objects.unscoped()
        .filter(status=RS.QUEUED)
        .values_list("job_id", "team_id")
        .distinct()[:TICK_BATCH]
    ):
        with team_scope(team_id):
            counts["started"] += start_queued(job_id, team_id)
    if any(counts.values()):
        logger.info("jobs tick: %s", counts)
    return counts


def _start_again(attempt_id: int, team_id: int) -> int:
    """A start nobody heard of since it was sent: sent again, or given up on after
    START_TRIES (the run fails, saying so)."""
    with team_scope(team_id):
        attempt = Attempt.objects.for_team(team_id).filter(pk=attempt_id).first()
        if attempt is None:
            return 0
        if attempt.start_attempts < START_TRIES:
            attempt_dispatch(attempt_id, team_id)
            return 1
        _fail_start(attempt, f"Its machine did not start it ({START_TRIES} tries).")
        return 1


def _time_out(run_id: int, team_id: int) -> int:
    with team_scope(team_id), transaction.atomic():
        run = _lock_run(run_id, team_id)
        if run is None or run.ended_at is not None:
            return 0
        timeout = int(run.definition.get("timeout_seconds") or 0)
        cap = entitlements.run_limit(run.team_id)
        if cap is not None and (not timeout or cap.total_seconds() < timeout):
            # The plan's session cap came first (see _on_started).
            hours = cap.total_seconds() / 3600
            message = f"Timed out: the team's plan runs a job for at most {hours:g} hours."
        else:
            message = f"Timed out: it ran longer than {timeout} s."
        attempt = _open_attempt(run)
        if attempt is None:
            run_end(run, RS.TIMED_OUT, message)
        elif attempt.status == AS.EXITED:
            return 0  # its process ended in time; its outputs are being saved
        elif attempt.status != AS.STOPPING:
            attempt_stop(run, attempt, END.TIMED_OUT, message)
        else:
            return 0
        return 1


def _stop_given_up(attempt_id: int, run_id: int, team_id: int, now: datetime) -> int:
    with team_scope(team_id), transaction.atomic():
        run = _lock_run(run_id, team_id)
        attempt = _lock_attempt(attempt_id, team_id)
        if run is None or attempt is None or attempt.ended_at is not None:
            return 0
        grace = timedelta(seconds=int(run.definition.get("grace_seconds") or 0))
        if now - attempt.progressed_at < grace + STOP_PATIENCE:
            return 0
        _end_stopping(run, attempt)
        return 1


def _lost(attempt_id: int, run_id: int, team_id: int) -> int:
    """An attempt whose placement the machines reconciler freed (host offline, workload
    missing from its reports): lost as of when it was last seen."""
    with team_scope(team_id), transaction.atomic():
        run = _lock_run(run_id, team_id)
        attempt = _lock_attempt(attempt_id, team_id)
        if run is None or attempt is None or attempt.ended_at is not None:
            return 0
        placement = attempt.placement
        if placement is None or placement.active:
            return 0
        if attempt.status == AS.STOPPING:
            _end_stopping(run, attempt)
            return 1
        if attempt.status == AS.EXITED:
            # Its host went away while its outputs were read: they are not coming.
            _outputs_end(run, attempt, ok=False, message="its machine was lost.")
            return 1
        attempt_end(attempt, END.LOST, at=placement.released_at, message="Its machine lost it.")
        retry_or_lose(run, attempt, "its machine lost it")
        return 1
