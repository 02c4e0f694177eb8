"""Notebooks: create, start and follow to ready, stop, open, logs (owner: helper "sdk").

A ``notebook`` argument is its id (int, or digits) or its name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lattice.resources import Resource

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Iterator

    from lattice.types import LogLine, Notebook, NotebookEvent


class Notebooks(Resource):
    def list(self, team: str | None = None) -> builtins.list[Notebook]:
        raise NotImplementedError

    def get(self, notebook: int | str, *, team: str | None = None) -> Notebook:
        raise NotImplementedError

    def create(
        self, name: str, *, machine_type: str, team: str | None = None, **fields: Any
    ) -> Notebook:
        raise NotImplementedError

    def start(
        self, notebook: int | str, *, team: str | None = None, machine_type: str | None = None
    ) -> Notebook:
        """Ask for it to run; returns at once (see ``wait``)."""
        raise NotImplementedError

    def wait(
        self,
        notebook: int | str,
        *,
        team: str | None = None,
        timeout: float | None = None,
        on_event: Callable[[NotebookEvent], None] | None = None,
    ) -> Notebook:
        """Follow its phases until it runs (returned) or fails, stops or is lost (a
        LatticeError with code "notebook_failed" and the server's message)."""
        raise NotImplementedError

    def stop(self, notebook: int | str, *, team: str | None = None) -> Notebook:
        raise NotImplementedError

    def delete(self, notebook: int | str, *, team: str | None = None) -> None:
        raise NotImplementedError

    def open_url(self, notebook: int | str, *, team: str | None = None) -> str:
        """The absolute URL that opens its JupyterLab in a signed-in browser."""
        raise NotImplementedError

    def logs(
        self, notebook: int | str, *, team: str | None = None, follow: bool = False
    ) -> Iterator[LogLine]:
        raise NotImplementedError
