"""The state a command runs with (server, team, ``--json``) and the options every command
takes: ``--json`` and ``--team`` are accepted before the area (``lattice --json notebooks
list``) and after the command (``lattice notebooks list --json``) alike."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

import lattice

if TYPE_CHECKING:
    from collections.abc import Callable

F = TypeVar("F", bound="Callable[..., Any]")


@dataclass
class State:
    url: str | None = None
    team: str | None = None
    json: bool = False
    _client: lattice.Client | None = None

    def client(self) -> lattice.Client:
        """The SDK's client for this run (built once, closed when the command ends)."""
        if self._client is None:
            self._client = lattice.Client(url=self.url, team=self.team)
            click.get_current_context().call_on_close(self._client.close)
        return self._client


def state() -> State:
    return click.get_current_context().ensure_object(State)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).json = True


def _set_team(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(State).team = value


json_option = click.option(
    "--json",
    "json_output",
    is_flag=True,
    expose_value=False,
    callback=_set_json,
    help="Print the result as JSON on stdout (for scripts); notes go to stderr.",
)
team_option = click.option(
    "--team",
    metavar="SLUG",
    expose_value=False,
    callback=_set_team,
    help="The team to act in (else LATTICE_TEAM, `lattice teams use`, or your only team).",
)


def common(func: F) -> F:
    """``--json`` and ``--team`` on a command."""
    return json_option(team_option(func))
