"""``lattice.Client``: one server, one token, a default team, and the resources under it.

Example::

    import lattice

    client = lattice.Client()                 # from the environment or `lattice login`
    client.datasets.upload("mnist", "./data")  # the team: client.team, or the only one
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lattice import config
from lattice.errors import AuthenticationFailed, LatticeError
from lattice.http import Transport
from lattice.resources.datasets import Datasets
from lattice.resources.deployments import Deployments
from lattice.resources.jobs import Jobs
from lattice.resources.machines import MachineTypes
from lattice.resources.models import Models
from lattice.resources.notebooks import Notebooks
from lattice.resources.teams import Teams
from lattice.types import User

if TYPE_CHECKING:
    import httpx


class Client:
    """A client of one Lattice server. ``url``, ``token`` and ``team`` default to the
    environment (``LATTICE_URL``, ``LATTICE_TOKEN``, ``LATTICE_TEAM``), then the config file
    ``lattice login`` wrote (lattice.config)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        team: str | None = None,
        *,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        settings = config.resolve(url=url, token=token, team=team)
        if not settings.url:
            raise LatticeError(
                "No server: run `lattice login`, or set LATTICE_URL and LATTICE_TOKEN.",
                code="not_configured",
            )
        if not settings.token:
            saved = config.load_file()
            if saved.token and saved.url and not config.same_server(settings.url, saved.url):
                message = (
                    f"No token for {settings.url} (the saved one is for {saved.url}): run "
                    f"`lattice login --url {settings.url}` or set LATTICE_TOKEN."
                )
            else:
                message = "No token: run `lattice login`, or set LATTICE_TOKEN."
            raise AuthenticationFailed(message, code="not_configured")
        self.url = settings.url.rstrip("/")
        self.team = settings.team
        self.transport = Transport(self.url, settings.token, timeout=timeout)
        self.teams = Teams(self)
        self.machine_types = MachineTypes(self)
        self.notebooks = Notebooks(self)
        self.datasets = Datasets(self)
        self.models = Models(self)
        self.deployments = Deployments(self)
        self.jobs = Jobs(self)
        self._only_team: str | None = None

    def whoami(self) -> User:
        """The user the token acts as (``GET /api/v1/me``)."""
        return User.from_api(self.transport.json("GET", "/me"))

    def team_slug(self, team: str | None = None) -> str:
        """The team a call acts in: ``team``, else the client's default, else the user's only
        team; a LatticeError (code "no_team") naming the choices otherwise."""
        chosen = team or self.team
        if chosen:
            return chosen
        if self._only_team is None:
            teams = self.teams.list()
            if len(teams) != 1:
                names = ", ".join(t.slug for t in teams) or "none"
                raise LatticeError(
                    f"Say which team: --team SLUG, LATTICE_TEAM, or `lattice teams use SLUG` "
                    f"(yours: {names}).",
                    code="no_team",
                )
            self._only_team = teams[0].slug
        return self._only_team

    def team_path(self, team: str | None = None) -> str:
        """``/teams/<slug>`` for the team a call acts in (relative to /api/v1)."""
        return f"/teams/{self.team_slug(team)}"

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
