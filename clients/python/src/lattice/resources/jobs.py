"""Jobs and their runs: run, follow, cancel, logs (owner: helper "sdk").

A ``job`` argument is its id (int, or digits) or its name (or slug).

A run's log is its live stream, read like a notebook's: ``logs(follow=True)`` is the
server's ``?follow=1`` NDJSON response, which ends when a status message says the run
ended (apps.jobs.api.views.RunFollower); past the server's longest follow it is asked again
from the last message seen, so a follow lasts as long as the run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lattice.errors import LatticeError
from lattice.resources import FOLLOW_SECONDS, Resource, log_lines
from lattice.types import RUN_OPEN_STATUSES, Job, Run

if TYPE_CHECKING:
    import builtins
    from collections.abc import Iterator

    from lattice.types import LogLine


class Jobs(Resource):
    def _where(self, job: int | str, team: str | None) -> str:
        """``/teams/<slug>/jobs/<id>/`` for the job named."""
        slug = self.client.team_slug(team)
        pk = self.resolve_id(
            job, path=f"/teams/{slug}/jobs/", kind="job", team=slug, keys=("name", "slug")
        )
        return f"/teams/{slug}/jobs/{pk}/"

    def list(self, team: str | None = None) -> builtins.list[Job]:
        """The team's jobs, each with its latest run (``last_run``)."""
        path = f"{self.client.team_path(team)}/jobs/"
        return [Job.from_api(item) for item in self.transport.paginated(path)]

    def get(self, job: int | str, *, team: str | None = None) -> Job:
        return Job.from_api(self.transport.json("GET", self._where(job, team)))

    def create(self, name: str, *, team: str | None = None, **fields: Any) -> Job:
        """A new job (``fields`` as the API takes them: command, machine_type, template,
        source, git_url, env, secret_names, inputs, output, schedule, ...)."""
        path = f"{self.client.team_path(team)}/jobs/"
        return Job.from_api(self.transport.json("POST", path, json={"name": name, **fields}))

    def delete(self, job: int | str, *, team: str | None = None) -> None:
        """Delete it (its open runs are cancelled)."""
        self.transport.request("DELETE", self._where(job, team))

    def run(
        self, job: int | str, *, team: str | None = None, changes: dict[str, Any] | None = None
    ) -> Run:
        """Start a run (with ``changes`` to the definition, for this run only)."""
        body = {"changes": changes} if changes else {}
        where = self._where(job, team)
        return Run.from_api(self.transport.json("POST", f"{where}run/", json=body))

    def runs(self, job: int | str, *, team: str | None = None) -> builtins.list[Run]:
        """Its runs, newest first."""
        where = self._where(job, team)
        return [Run.from_api(item) for item in self.transport.paginated(f"{where}runs/")]

    def get_run(self, job: int | str, number: int, *, team: str | None = None) -> Run:
        where = self._where(job, team)
        return Run.from_api(self.transport.json("GET", f"{where}runs/{int(number)}/"))

    def cancel(self, job: int | str, number: int, *, team: str | None = None) -> Run:
        """Cancel an open run (SIGTERM, the grace period, SIGKILL); Conflict once it ended."""
        where = self._where(job, team)
        return Run.from_api(self.transport.json("POST", f"{where}runs/{int(number)}/cancel/"))

    def logs(
        self, job: int | str, number: int, *, team: str | None = None, follow: bool = False
    ) -> Iterator[LogLine]:
        """Its log lines (and status changes); with ``follow``, until the run ends."""
        run_path = f"{self._where(job, team)}runs/{int(number)}/"
        path = f"{run_path}logs/"
        if not follow:
            for message in self.stream_page(path):
                yield from log_lines(message)
            return
        yield from self.follow_lines(
            path,
            ended_by=lambda message: (
                True
                if message.get("type") in ("run", "status") and _ended(message.get("status"))
                else None
            ),
            finished=lambda: Run.from_api(self.transport.json("GET", run_path)).ended,
        )

    def wait(
        self,
        job: int | str,
        number: int,
        *,
        team: str | None = None,
        timeout: float | None = None,
    ) -> Run:
        """Block until the run has ended; the run as it ended. After ``timeout`` seconds,
        a LatticeError with code "timeout"."""
        run_path = f"{self._where(job, team)}runs/{int(number)}/"
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            after, epoch = self.stream_position(f"{run_path}logs/")
            run = Run.from_api(self.transport.json("GET", run_path))
            if run.ended:
                return run
            seconds = FOLLOW_SECONDS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LatticeError(
                        f"Run {run.number} was still {run.status} after {timeout or 0:g} s.",
                        code="timeout",
                    )
                seconds = max(1, min(FOLLOW_SECONDS, int(left) + 1))
            for message in self.stream_follow(
                f"{run_path}logs/", after=after, epoch=epoch, seconds=seconds
            ):
                if message.get("type") in ("run", "status") and _ended(message.get("status")):
                    break


def _ended(status: object) -> bool:
    return isinstance(status, str) and bool(status) and status not in RUN_OPEN_STATUSES
