"""Signing in and out, who the token is, and teams: ``lattice login|logout|whoami`` and
``lattice teams list|members|use``."""

from __future__ import annotations

import ipaddress
import os
import sys
from urllib.parse import urlsplit

import click

import lattice
from lattice import config
from lattice.cli import output
from lattice.cli.context import common, json_option, state


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command()
@click.option("--url", "url", metavar="URL", help="The server, e.g. https://lattice.example.com.")
@click.option(
    "--token-stdin", is_flag=True, help="Read the token from stdin instead of asking for it."
)
@json_option
def login(url: str | None, token_stdin: bool) -> None:
    """Save a server and an API token (made on the server's Tokens page) for later commands.

    The token is checked with the server before it is saved, in a file only you can read.
    """
    saved = config.load_file()
    url = url or state().url
    if not url:
        url = click.prompt(
            "Server URL", default=saved.url or os.environ.get("LATTICE_URL"), err=True
        )
    url = str(url).strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise output.Failure("The server URL starts with http:// or https://.", output.EXIT_USAGE)
    if url.startswith("http://") and not _loopback(url):
        output.note(
            f"Warning: {url} is plain http: the token crosses the network unencrypted. "
            "Use https:// unless this network is yours."
        )
    if token_stdin:
        token = sys.stdin.read().strip()
    else:
        token = click.prompt("API token (input hidden)", hide_input=True, err=True).strip()
    if not token:
        raise output.Failure("No token given.", output.EXIT_USAGE)
    with lattice.Client(url=url, token=token) as client:
        user = client.whoami()
    team = saved.team if saved.url and config.same_server(saved.url, url) else None
    path = config.save_file(config.Settings(url=url, token=token, team=team))
    if state().json:
        output.print_json(user)
        return
    output.note(f"Signed in to {url} as {user.email}. Saved in {path}.")
    if os.environ.get("LATTICE_TOKEN"):
        output.note("Note: LATTICE_TOKEN is set in this shell and wins over the saved token.")


@click.command()
def logout() -> None:
    """Forget the saved token (the server's URL and default team stay)."""
    saved = config.load_file()
    if not saved.token:
        output.note("Not signed in: no token saved.")
        return
    path = config.save_file(config.Settings(url=saved.url, team=saved.team))
    output.note(
        f"Signed out: the token is gone from {path}. It still works until it expires or you "
        "revoke it on the server's Tokens page."
    )


@click.command()
@common
def whoami() -> None:
    """The user the token acts as, and the default team."""
    client = state().client()
    user = client.whoami()
    if state().json:
        output.print_json(user)
        return
    output.fields(
        [
            ("User", f"{user.name} <{user.email}>" if user.name else user.email),
            ("Server", client.url),
            ("Team", client.team or "(none chosen: `lattice teams use SLUG`)"),
        ]
    )


@click.group("teams")
def teams() -> None:
    """Your teams and their members."""


@teams.command("list")
@common
def teams_list() -> None:
    """The teams the token may act in."""
    client = state().client()
    found = client.teams.list()
    if state().json:
        output.print_json(found)
        return
    chosen = client.team
    output.table(
        found,
        [
            ("SLUG", lambda t: t.slug),
            ("NAME", lambda t: t.name),
            ("ROLE", lambda t: t.role),
            ("DEFAULT", lambda t: t.slug == chosen),
        ],
        empty="No teams.",
    )


@teams.command("members")
@common
def teams_members() -> None:
    """The members of the team."""
    found = state().client().teams.members(state().team)
    if state().json:
        output.print_json(found)
        return

    output.table(
        found,
        [("EMAIL", lambda m: m.email), ("NAME", lambda m: m.name), ("ROLE", lambda m: m.role)],
        empty="No members.",
    )


@teams.command("use")
@click.argument("slug")
@json_option
def teams_use(slug: str) -> None:
    """Make SLUG the default team of later commands (saved with the login)."""
    client = state().client()
    team = client.teams.get(slug)
    saved = config.load_file()
    config.save_file(config.Settings(url=saved.url, token=saved.token, team=team.slug))
    if state().json:
        output.print_json(team)
        return
    output.note(f"Default team: {team.slug} ({team.name}).")
    if os.environ.get("LATTICE_TEAM"):
        output.note("Note: LATTICE_TEAM is set in this shell and wins over the default.")


def register(root: click.Group) -> None:
    for command in (login, logout, whoami, teams):
        root.add_command(command)
