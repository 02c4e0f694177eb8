"""A run's way from queued to its end, through one attempt or more (owner: the engine).

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

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.jobs.models import Job, Run


def run_create(
    job: Job,
    *,
    trigger: str,
    actor: User | None,
    definition: dict[str, Any] | None = None,
    rerun_of: Run | None = None,
) -> Run:
    raise NotImplementedError


def run_cancel(run: Run, *, actor: User | None) -> Run:
    raise NotImplementedError


def on_attempt_event(host: str, workload: str, event: str, data: dict[str, Any]) -> None:
    raise NotImplementedError


def workload_stream(host: str, workload: str) -> str | None:
    raise NotImplementedError


def on_workload_placed(workload: str) -> None:
    raise NotImplementedError


def runs_tick() -> dict[str, int]:
    raise NotImplementedError


def run_outputs_done(run_id: int, *, ok: bool, message: str = "") -> None:
    raise NotImplementedError
