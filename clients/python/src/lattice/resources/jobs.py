"""Jobs and their runs: run, follow, cancel, logs (owner: helper "sdk").

A ``job`` argument is its id (int, or digits) or its name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lattice.resources import Resource

if TYPE_CHECKING:
    import builtins
    from collections.abc import Iterator

    from lattice.types import Job, LogLine, Run


class Jobs(Resource):
    def list(self, team: str | None = None) -> builtins.list[Job]:
        raise NotImplementedError

    def get(self, job: int | str, *, team: str | None = None) -> Job:
        raise NotImplementedError

    def create(self, name: str, *, team: str | None = None, **fields: Any) -> Job:
        raise NotImplementedError

    def run(
        self, job: int | str, *, team: str | None = None, changes: dict[str, Any] | None = None
    ) -> Run:
        """Start a run (with ``changes`` to the definition, for this run only)."""
        raise NotImplementedError

    def runs(self, job: int | str, *, team: str | None = None) -> builtins.list[Run]:
        raise NotImplementedError

    def get_run(self, job: int | str, number: int, *, team: str | None = None) -> Run:
        raise NotImplementedError

    def cancel(self, job: int | str, number: int, *, team: str | None = None) -> Run:
        raise NotImplementedError

    def logs(
        self, job: int | str, number: int, *, team: str | None = None, follow: bool = False
    ) -> Iterator[LogLine]:
        """Its log lines (and status changes); with ``follow``, until the run ends."""
        raise NotImplementedError

    def wait(self, job: int | str, number: int, *, team: str | None = None) -> Run:
        """Block until the run has ended; the run as it ended."""
        raise NotImplementedError
