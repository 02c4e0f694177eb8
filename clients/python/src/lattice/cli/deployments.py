"""``lattice deployments``: list, create, status, invoke (a JSON payload), logs, rollback,
delete. A DEPLOYMENT argument is its slug."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from lattice.cli import output
from lattice.cli.context import common, state
from lattice.cli.follow import print_lines

_FIRST_ERROR_STATUS = 400


@click.group("deployments")
def group() -> None:
    """Models served behind an HTTPS endpoint."""


@group.command("list")
@common
def deployments_list() -> None:
    """The team's deployments."""
    found = state().client().deployments.list(state().team)
    if state().json:
        output.print_json(found)
        return
    output.table(
        found,
        [
            ("SLUG", lambda d: d.slug),
            ("NAME", lambda d: d.name),
            ("STATUS", lambda d: d.status),
            ("AUTH", lambda d: d.raw.get("auth_mode")),
            ("LAST REQUEST", lambda d: output.when(d.raw.get("last_request_at"))),
        ],
        empty="No deployments yet: `lattice deployments create NAME --model MODEL`.",
    )


def _env(values: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: write KEY=VALUE.", param_hint="--env")
        env[key] = value
    return env


@group.command("create")
@click.argument("name")
@click.option("--model", required=True, help="The model to serve (its slug).")
@click.option(
    "--version",
    "version",
    type=int,
    default=None,
    help="Its version (default: the latest, pinned).",
)
@click.option("--alias", default=None, help="Follow this alias of the model (e.g. production).")
@click.option("--machine-type", default=None, metavar="SLUG")
@click.option("--min-replicas", type=int, default=None)
@click.option("--max-replicas", type=int, default=None)
@click.option("--auth-mode", default=None, help="protected (a token or key) or public.")
@click.option("--description", default=None)
@click.option("--env", "env", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@common
def deployments_create(
    *,
    name: str,
    model: str,
    version: int | None,
    alias: str | None,
    machine_type: str | None,
    min_replicas: int | None,
    max_replicas: int | None,
    auth_mode: str | None,
    description: str | None,
    env: tuple[str, ...],
) -> None:
    """Serve a version (or alias) of MODEL as deployment NAME."""
    if version is not None and alias:
        raise click.UsageError("Give --version or --alias, not both.")
    client = state().client()
    if version is None and not alias:  # the model's latest version, pinned
        latest = client.models.get(model, team=state().team).raw.get("latest_version")
        if not isinstance(latest, int):
            raise output.Failure(f"Model {model} has no version yet: push one first.")
        version = latest
    extra: dict[str, Any] = {
        "machine_type": machine_type,
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "auth_mode": auth_mode,
        "description": description,
        "env": _env(env) or None,
    }
    made = (
        state()
        .client()
        .deployments.create(
            name,
            model=model,
            version=version,
            alias=alias,
            team=state().team,
            **{k: v for k, v in extra.items() if v is not None},
        )
    )
    if state().json:
        output.print_json(made)
        return
    output.note(f"Deploying {made.slug} ({made.status}): `lattice deployments status {made.slug}`.")


@group.command("status")
@click.argument("deployment")
@common
def deployments_status(deployment: str) -> None:
    """DEPLOYMENT's status, revisions, replicas and endpoint."""
    found = state().client().deployments.get(deployment, team=state().team)
    if state().json:
        output.print_json(found)
        return
    raw = found.raw
    endpoints: dict[str, Any] = raw["endpoints"] if isinstance(raw.get("endpoints"), dict) else {}
    revisions = [r for r in raw.get("revisions") or [] if isinstance(r, dict)]
    replicas = [r for r in raw.get("replicas") or [] if isinstance(r, dict)]
    traffic = [t for t in raw.get("traffic") or [] if isinstance(t, dict)]
    output.fields(
        [
            ("Name", f"{found.name} ({found.slug})"),
            (
                "Status",
                f"{found.status}: {raw.get('status_message')}"
                if raw.get("status_message")
                else found.status,
            ),
            ("Endpoint", endpoints.get("origin") or endpoints.get("api")),
            (
                "Traffic",
                ", ".join(f"revision {t.get('revision')}: {t.get('percent')}%" for t in traffic),
            ),
            ("Rolling out", raw.get("rollout")),
            ("Replicas", ", ".join(str(r.get("status")) for r in replicas)),
        ]
    )
    if revisions:
        output.stdout().print()
        output.table(
            revisions,
            [
                ("REVISION", lambda r: r.get("number")),
                ("STATUS", lambda r: r.get("status")),
                ("MODEL", lambda r: f"{r.get('model')} v{r.get('version')}"),
                ("MACHINE", lambda r: r.get("machine_type")),
                ("REASON", lambda r: r.get("reason")),
                ("CREATED", lambda r: output.when(r.get("created_at"))),
            ],
        )


def _payload(data: str | None) -> Any:
    """--data JSON, --data @file, or stdin when it is not a terminal; None for no body."""
    text: str | None
    if data is None:
        text = None if sys.stdin.isatty() else sys.stdin.read()
        if text is not None and not text.strip():
            text = None
    elif data.startswith("@"):
        try:
            text = Path(data[1:]).read_text()
        except OSError as error:
            raise click.BadParameter(
                f"cannot read {data[1:]}: {error.strerror}", param_hint="--data"
            ) from None
    else:
        text = data
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"not JSON: {error}", param_hint="--data") from None


@group.command("invoke")
@click.argument("deployment")
@click.option("-d", "--data", default=None, help="The JSON payload, or @FILE (default: stdin).")
@click.option("--path", default="", help="A path under the endpoint (e.g. v1/predict).")
@click.option("-X", "--method", default="POST", show_default=True)
@common
def deployments_invoke(deployment: str, data: str | None, path: str, method: str) -> None:
    """Call DEPLOYMENT once with a JSON payload and print its answer."""
    payload = _payload(data)
    result = (
        state()
        .client()
        .deployments.invoke(
            deployment, payload, path=path, method=method.upper(), team=state().team
        )
    )
    try:
        body: Any = result.json()
    except ValueError:
        body = None
    if state().json:
        output.print_json(
            {
                "status": result.status,
                "headers": result.headers,
                "body": body if body is not None else result.body.decode("utf-8", "replace"),
            }
        )
    elif body is not None:
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        click.echo(result.body.decode("utf-8", "replace"), nl=not result.body.endswith(b"\n"))
    if result.status >= _FIRST_ERROR_STATUS:
        raise output.Failure(f"the deployment answered {result.status}.", output.EXIT_ERROR)


@group.command("logs")
@click.argument("deployment")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@common
def deployments_logs(deployment: str, follow: bool) -> None:
    """DEPLOYMENT's log: its replicas' output and its events."""
    print_lines(state().client().deployments.logs(deployment, team=state().team, follow=follow))


@group.command("rollback")
@click.argument("deployment")
@click.argument("revision", type=int)
@common
def deployments_rollback(deployment: str, revision: int) -> None:
    """Serve DEPLOYMENT's earlier REVISION again (as a new revision)."""
    found = state().client().deployments.rollback(deployment, revision, team=state().team)
    if state().json:
        output.print_json(found)
        return
    output.note(f"Rolling {found.slug} back to revision {revision} ({found.status}).")


@group.command("delete")
@click.argument("deployment")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@common
def deployments_delete(deployment: str, yes: bool) -> None:
    """Stop DEPLOYMENT's replicas and delete it."""
    if not yes:
        click.confirm(f"Delete deployment {deployment}?", abort=True, err=True)
    state().client().deployments.delete(deployment, team=state().team)
    if state().json:
        output.print_json({"deleted": deployment})
        return
    output.note(f"Deleted deployment {deployment}.")
