"""``lattice notebooks``: list, create, start (live phases until ready), stop, open, logs,
delete. A NOTEBOOK argument is its id or its name."""

from __future__ import annotations

import os
import sys
import webbrowser
from typing import TYPE_CHECKING, Any

import click

from lattice.cli import output
from lattice.cli.context import common, state
from lattice.cli.follow import live_status, print_lines

if TYPE_CHECKING:
    from lattice.types import NotebookEvent


def _ref(value: str) -> int | str:
    return int(value) if value.isdigit() else value


@click.group("notebooks")
def group() -> None:
    """JupyterLab notebooks on the team's machines."""


@group.command("list")
@common
def notebooks_list() -> None:
    """The team's notebooks and their status."""
    found = state().client().notebooks.list(state().team)
    if state().json:
        output.print_json(found)
        return
    output.table(
        found,
        [
            ("ID", lambda n: n.id),
            ("NAME", lambda n: n.name),
            ("STATUS", lambda n: n.status),
            ("MACHINE", lambda n: n.machine_type),
            ("TEMPLATE", lambda n: n.raw.get("template")),
            ("CREATED", lambda n: output.when(n.raw.get("created_at"))),
        ],
        empty="No notebooks yet: `lattice notebooks create NAME --machine-type SLUG`.",
    )


@group.command("create")
@click.argument("name")
@click.option(
    "--machine-type", required=True, metavar="SLUG", help="See `lattice machine-types list`."
)
@click.option(
    "--template",
    default="scipy",
    show_default=True,
    metavar="SLUG",
    help="pytorch, tensorflow, scipy, r, or custom (with --image).",
)
@click.option("--image", default=None, help="The image to run, for the custom template.")
@click.option("--idle-timeout", type=int, default=None, metavar="MINUTES")
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="NAME",
    help="A team secret to expose (repeatable).",
)
@click.option("--git-url", default=None, help="A repository to clone into the notebook.")
@click.option("--git-ref", default=None)
@common
def notebooks_create(
    *,
    name: str,
    machine_type: str,
    template: str,
    image: str | None,
    idle_timeout: int | None,
    secrets: tuple[str, ...],
    git_url: str | None,
    git_ref: str | None,
) -> None:
    """Make a notebook NAME (stopped; `lattice notebooks start` runs it)."""
    extra: dict[str, Any] = {
        "template": template,
        "custom_image": image,
        "idle_timeout_minutes": idle_timeout,
        "secrets": list(secrets) or None,
        "git_url": git_url,
        "git_ref": git_ref,
    }
    notebook = (
        state()
        .client()
        .notebooks.create(
            name,
            machine_type=machine_type,
            team=state().team,
            **{k: v for k, v in extra.items() if v is not None},
        )
    )
    if state().json:
        output.print_json(notebook)
        return
    output.note(
        f"Made notebook {notebook.name} (id {notebook.id}): "
        f"`lattice notebooks start {notebook.id}`."
    )


def _phase(event: NotebookEvent) -> str:
    words = event.message or event.phase or event.status
    percent = f" ({event.percent}%)" if event.percent is not None else ""
    return f"{event.status or 'starting'}: {words}{percent}"


@group.command("start")
@click.argument("notebook")
@click.option("--machine-type", default=None, metavar="SLUG", help="Start on another machine type.")
@click.option("--no-wait", is_flag=True, help="Return once the start is accepted.")
@click.option(
    "--timeout",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Give up waiting after this long.",
)
@common
def notebooks_start(
    notebook: str, machine_type: str | None, no_wait: bool, timeout: float | None
) -> None:
    """Start NOTEBOOK and follow its phases until it is ready; then print its URL."""
    client, team = state().client(), state().team
    started = client.notebooks.start(_ref(notebook), team=team, machine_type=machine_type)
    if no_wait:
        if state().json:
            output.print_json(started)
        else:
            output.note(f"Starting {started.name} ({started.status}).")
        return
    with live_status(f"Starting {started.name}...") as update:
        ready = client.notebooks.wait(
            _ref(notebook), team=team, timeout=timeout, on_event=lambda e: update(_phase(e))
        )
    if state().json:
        output.print_json(ready)
        return
    url = client.notebooks.open_url(_ref(notebook), team=team)
    output.note(f"{ready.name} is ready. Open it with `lattice notebooks open {ready.id}`, or:")
    click.echo(url)


@group.command("stop")
@click.argument("notebook")
@common
def notebooks_stop(notebook: str) -> None:
    """Stop NOTEBOOK (its files stay)."""
    stopped = state().client().notebooks.stop(_ref(notebook), team=state().team)
    if state().json:
        output.print_json(stopped)
        return
    output.note(f"Stopping {stopped.name} ({stopped.status}).")


@group.command("open")
@click.argument("notebook")
@click.option("--no-browser", is_flag=True, help="Only print the URL.")
@common
def notebooks_open(notebook: str, no_browser: bool) -> None:
    """Open NOTEBOOK's JupyterLab in the browser (and print its URL, for a headless shell)."""
    url = state().client().notebooks.open_url(_ref(notebook), team=state().team)
    if state().json:
        output.print_json({"url": url})
    else:
        click.echo(url)
    if not no_browser:
        try:
            _open_quietly(url)
        except webbrowser.Error:
            output.note("No browser here: open the URL above.")


def _open_quietly(url: str) -> None:
    """``webbrowser.open(url)`` with file descriptor 1 pointing at /dev/null meanwhile: the
    browser (or xdg-open, $BROWSER) inherits it, so what it prints ("Opening in existing
    browser session.") never mixes with this command's stdout (``--json`` stays JSON)."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no fd 1 at all: nothing to protect
        webbrowser.open(url)
        return
    try:
        with open(os.devnull, "wb") as null:  # noqa: PTH123
            os.dup2(null.fileno(), 1)
        webbrowser.open(url)
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@group.command("logs")
@click.argument("notebook")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until it stops.")
@common
def notebooks_logs(notebook: str, follow: bool) -> None:
    """NOTEBOOK's log (its current or last session)."""
    lines = state().client().notebooks.logs(_ref(notebook), team=state().team, follow=follow)
    print_lines(lines)


@group.command("delete")
@click.argument("notebook")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@common
def notebooks_delete(notebook: str, yes: bool) -> None:
    """Delete NOTEBOOK and its files."""
    if not yes:
        click.confirm(f"Delete notebook {notebook} and its files?", abort=True, err=True)
    state().client().notebooks.delete(_ref(notebook), team=state().team)
    if state().json:
        output.print_json({"deleted": notebook})
        return
    output.note(f"Deleted notebook {notebook}.")
