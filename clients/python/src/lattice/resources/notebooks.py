"""Notebooks: create, start and follow to ready, stop, open, logs (owner: helper "sdk").

A ``notebook`` argument is its id (int, or digits) or its name.

``wait`` follows the notebook's live stream (``GET .../logs/?follow=1``, NDJSON): each
status message is a phase (queued, pulling, starting with its percent, running) passed to
``on_event``. It starts from the stream's newest message and reads the notebook itself
once before following, so a change that lands between the two is seen either way.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from lattice.errors import LatticeError
from lattice.resources import FOLLOW_SECONDS, Resource, log_lines
from lattice.types import NOTEBOOK_ENDED_STATUSES, Notebook, NotebookEvent

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Iterator

    from lattice.types import LogLine

RUNNING = "running"


def _gave_up(status: str, desired: str) -> bool:
    """Whether a notebook in ``status`` has stopped trying to run: failed or lost, or
    stopped without anyone wanting it running (a stop while it started)."""
    if status in ("failed", "lost"):
        return True
    return status in NOTEBOOK_ENDED_STATUSES and desired != RUNNING


class Notebooks(Resource):
    def _where(self, notebook: int | str, team: str | None) -> str:
        """``/teams/<slug>/notebooks/<id>/`` for the notebook named."""
        slug = self.client.team_slug(team)
        pk = self.resolve_id(notebook, path=f"/teams/{slug}/notebooks/", kind="notebook", team=slug)
        return f"/teams/{slug}/notebooks/{pk}/"

    def list(self, team: str | None = None) -> builtins.list[Notebook]:
        """The team's notebooks, newest first."""
        path = f"{self.client.team_path(team)}/notebooks/"
        return [Notebook.from_api(item) for item in self.transport.paginated(path)]

    def get(self, notebook: int | str, *, team: str | None = None) -> Notebook:
        return Notebook.from_api(self.transport.json("GET", self._where(notebook, team)))

    def create(
        self,
        name: str,
        *,
        machine_type: str,
        team: str | None = None,
        template: str = "scipy",
        **fields: Any,
    ) -> Notebook:
        """A new, stopped notebook (``fields``: custom_image, idle_timeout_minutes, secrets,
        git_url, git_ref, git_secret, as the API takes them)."""
        body = {"name": name, "machine_type": machine_type, "template": template, **fields}
        path = f"{self.client.team_path(team)}/notebooks/"
        return Notebook.from_api(self.transport.json("POST", path, json=body))

    def start(
        self, notebook: int | str, *, team: str | None = None, machine_type: str | None = None
    ) -> Notebook:
        """Ask for it to run; returns at once (see ``wait``). With ``machine_type``, it is
        moved to that machine type first (only while it is stopped)."""
        where = self._where(notebook, team)
        if machine_type is not None:
            self.transport.json("PATCH", where, json={"machine_type": machine_type})
        return Notebook.from_api(self.transport.json("POST", f"{where}start/"))

    def wait(
        self,
        notebook: int | str,
        *,
        team: str | None = None,
        timeout: float | None = None,
        on_event: Callable[[NotebookEvent], None] | None = None,
    ) -> Notebook:
        """Follow its phases until it runs (returned) or fails, stops or is lost (a
        LatticeError with code "notebook_failed" and the server's message). After
        ``timeout`` seconds, a LatticeError with code "timeout"."""
        where = self._where(notebook, team)
        deadline = None if timeout is None else time.monotonic() + timeout
        seen: list[tuple[Any, ...]] = []

        def tell(event: NotebookEvent) -> None:
            key = (event.status, event.phase, event.percent, event.message)
            if on_event is not None and (not seen or seen[-1] != key):
                on_event(event)
            seen.append(key)

        while True:
            after, epoch = self.stream_position(f"{where}logs/")
            current = Notebook.from_api(self.transport.json("GET", where))
            tell(
                NotebookEvent(
                    status=current.status,
                    phase=current.status,
                    message=current.status_message,
                    raw=current.raw,
                )
            )
            if _ready(current.name, current.status, current.desired_state, current.status_message):
                return current
            left = _left(deadline, current, timeout)
            seconds = FOLLOW_SECONDS if left is None else max(1, int(left) + 1)
            for message in self.stream_follow(
                f"{where}logs/", after=after, epoch=epoch, seconds=seconds
            ):
                event = _event(message)
                if event is not None:
                    tell(event)
                    desired = str(message.get("desired") or "")
                    if _ready(current.name, event.status, desired, event.message):
                        return Notebook.from_api(self.transport.json("GET", where))
                _left(deadline, current, timeout)
            # The response ended (the server's follow timeout): read the notebook again.

    def stop(self, notebook: int | str, *, team: str | None = None) -> Notebook:
        """Stop it (its files are kept); stopping a stopped notebook does nothing."""
        where = self._where(notebook, team)
        return Notebook.from_api(self.transport.json("POST", f"{where}stop/"))

    def delete(self, notebook: int | str, *, team: str | None = None) -> None:
        """Delete it and its files (the server asks for its name as confirmation: sent)."""
        where = self._where(notebook, team)
        name = self.transport.json("GET", where)["name"]
        self.transport.request("DELETE", where, params={"confirmation": name})

    def events(
        self, notebook: int | str, *, team: str | None = None
    ) -> builtins.list[NotebookEvent]:
        """Its status changes and start phases, newest first."""
        where = self._where(notebook, team)
        return [NotebookEvent.from_api(e) for e in self.transport.paginated(f"{where}events/")]

    def open_url(self, notebook: int | str, *, team: str | None = None) -> str:
        """The absolute URL that opens its JupyterLab in a signed-in browser; a
        LatticeError (code "not_running") while it does not run."""
        current = self.get(notebook, team=team)
        if not current.open_url:
            raise LatticeError(
                f"{current.name} is {current.status or 'not running'}: start it first "
                f"(`lattice notebooks start {current.id}`).",
                code="not_running",
                status=409,
            )
        if current.open_url.startswith(("http://", "https://")):
            return current.open_url
        return self.client.url + current.open_url

    def logs(
        self, notebook: int | str, *, team: str | None = None, follow: bool = False
    ) -> Iterator[LogLine]:
        """Its recent log lines and status changes from the live stream; with ``follow``,
        then new ones as they come, until the notebook stops (or fails)."""
        where = self._where(notebook, team)
        path = f"{where}logs/"
        if not follow:
            for message in self.stream_page(path):
                yield from log_lines(message)
            return

        def ended_by(message: dict[str, Any]) -> bool | None:
            if message.get("type") != "status":
                return None
            return _gave_up(str(message.get("status") or ""), str(message.get("desired") or ""))

        def finished() -> bool:
            current = Notebook.from_api(self.transport.json("GET", where))
            return _gave_up(current.status, current.desired_state)

        yield from self.follow_lines(path, ended_by=ended_by, finished=finished)


def _event(message: dict[str, Any]) -> NotebookEvent | None:
    """The phase a status message of the live stream says (None for a logs message)."""
    if message.get("type") != "status" or not message.get("status"):
        return None
    status = str(message["status"])
    return NotebookEvent(
        id=int(message.get("seq") or 0),
        status=status,
        phase=str(message.get("phase") or status),
        message=str(message.get("message") or ""),
        percent=message.get("percent"),
        created_at=message.get("at"),
        raw=message,
    )


def _ready(name: str, status: str, desired: str, message: str) -> bool:
    """True once running; the "notebook_failed" LatticeError once it gave up; else False."""
    if status == RUNNING:
        return True
    if _gave_up(status, desired):
        raise _failed(name, status, message)
    return False


def _left(deadline: float | None, notebook: Notebook, timeout: float | None) -> float | None:
    """Seconds left until ``deadline`` (None: no deadline); "timeout" once none are."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timed_out(notebook, timeout)
    return left


def _failed(name: str, status: str, message: str) -> LatticeError:
    words = f"{name} {'is' if status == 'stopped' else 'has'} {status}"
    if status == "lost":
        words = f"{name} was lost"
    return LatticeError(
        f"{words}: {message}" if message else f"{words}.",
        code="notebook_failed",
    )


def _timed_out(notebook: Notebook, timeout: float | None) -> LatticeError:
    return LatticeError(
        f"{notebook.name} was not running after {timeout or 0:g} s (last: {notebook.status}).",
        code="timeout",
    )
