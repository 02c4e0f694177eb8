"""``lattice jobs``: list, runs, run (``--follow`` exits with the run's exit code), cancel,
logs. A JOB argument is its id or its name; a RUN is the run's number."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from lattice.cli import output
from lattice.cli.context import common, state
from lattice.cli.follow import print_lines

if TYPE_CHECKING:
    from lattice.types import Run

# How `lattice jobs run --follow` exits when the run has no exit code of its own
# (docs/cli.md, "Exit codes"): a failed run 1, and distinct codes for the platform's endings.
EXIT_RUN_FAILED = 1
EXIT_RUN_TIMED_OUT = 124  # as timeout(1)
EXIT_RUN_CANCELLED = 125
EXIT_RUN_LOST = 126
# The highest exit status a shell sees as itself (larger ones are taken modulo 256).
MAX_EXIT_STATUS = 255

ENDED = {"succeeded", "failed", "cancelled", "timed_out", "lost"}


def run_exit_code(run: Run) -> int:
    """The exit code `run --follow` ends with: 0 for a run that succeeded; for a failed run the
    process's own where it is a shell's failure (1..255), else 1 (a failed run whose command
    exited 0, e.g. its outputs could not be saved; an exit the server could not read, -1)."""
    if run.status == "cancelled":
        return EXIT_RUN_CANCELLED
    if run.status == "timed_out":
        return EXIT_RUN_TIMED_OUT
    if run.status == "lost":
        return EXIT_RUN_LOST
    if run.status == "succeeded":
        return 0
    if run.exit_code is not None and 1 <= run.exit_code <= MAX_EXIT_STATUS:
        return run.exit_code
    return EXIT_RUN_FAILED


def _ref(value: str) -> int | str:
    return int(value) if value.isdigit() else value


@click.group("jobs")
def group() -> None:
    """Batch jobs and their runs."""


@group.command("list")
@common
def jobs_list() -> None:
    """The team's jobs and their last run."""
    found = state().client().jobs.list(state().team)
    if state().json:
        output.print_json(found)
        return

    def last(job: object) -> str:
        run = getattr(job, "raw", {}).get("last_run")
        if not isinstance(run, dict):
            return "-"
        return f"#{run.get('number')} {run.get('status')}"

    output.table(
        found,
        [
            ("ID", lambda j: j.id),
            ("NAME", lambda j: j.name),
            ("MACHINE", lambda j: j.raw.get("machine_type")),
            ("SCHEDULE", lambda j: j.raw.get("schedule")),
            ("LAST RUN", last),
        ],
        empty="No jobs yet: make one on the Jobs page.",
    )


def _run_rows(runs: list[Run]) -> None:
    output.table(
        runs,
        [
            ("RUN", lambda r: r.number),
            ("STATUS", lambda r: r.status),
            ("EXIT", lambda r: r.exit_code),
            ("TRIGGER", lambda r: r.raw.get("trigger")),
            ("CREATED", lambda r: output.when(r.raw.get("created_at"))),
            ("ENDED", lambda r: output.when(r.raw.get("ended_at"))),
        ],
        empty="No runs yet: `lattice jobs run JOB`.",
    )


@group.command("runs")
@click.argument("job")
@common
def jobs_runs(job: str) -> None:
    """JOB's runs, newest first."""
    found = state().client().jobs.runs(_ref(job), team=state().team)
    if state().json:
        output.print_json(found)
        return
    _run_rows(found)


@group.command("run")
@click.argument("job")
@click.option(
    "-f", "--follow", is_flag=True, help="Print its log until it ends; exit with its exit code."
)
@click.pass_context
@common
def jobs_run(ctx: click.Context, *, job: str, follow: bool) -> None:
    """Start a run of JOB. With --follow, stream its log and exit as the run did: its exit
    code; 1 for a failure without one; 124 timed out, 125 cancelled, 126 lost."""
    client, team = state().client(), state().team
    run = client.jobs.run(_ref(job), team=team)
    if not follow:
        if state().json:
            output.print_json(run)
        else:
            output.note(
                f"Started run {run.number} of {job} ({run.status}): "
                f"`lattice jobs logs {job} {run.number} -f`."
            )
        return
    output.note(f"Run {run.number} of {job}: {run.status}.")
    print_lines(
        client.jobs.logs(_ref(job), run.number, team=team, follow=True), logs_to_stderr=state().json
    )
    ended = client.jobs.get_run(_ref(job), run.number, team=team)
    if ended.status not in ENDED:
        ended = client.jobs.wait(_ref(job), run.number, team=team)
    if state().json:
        output.print_json(ended)
    else:
        exit_code = f" (exit code {ended.exit_code})" if ended.exit_code is not None else ""
        output.note(f"Run {ended.number} {ended.status}{exit_code}.")
    ctx.exit(run_exit_code(ended))


@group.command("cancel")
@click.argument("job")
@click.argument("run", type=int)
@common
def jobs_cancel(job: str, run: int) -> None:
    """Cancel run RUN of JOB."""
    found = state().client().jobs.cancel(_ref(job), run, team=state().team)
    if state().json:
        output.print_json(found)
        return
    output.note(f"Cancelling run {found.number} of {job} ({found.status}).")


@group.command("logs")
@click.argument("job")
@click.argument("run", type=int)
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the run ends.")
@common
def jobs_logs(job: str, run: int, follow: bool) -> None:
    """The log of run RUN of JOB."""
    print_lines(state().client().jobs.logs(_ref(job), run, team=state().team, follow=follow))
