"""``lattice models``: list, create, versions, push a folder, aliases, download."""

from __future__ import annotations

from pathlib import Path

import click

from lattice.cli import output
from lattice.cli.context import common, state
from lattice.cli.transfers import run_transfer


@click.group("models")
def group() -> None:
    """The model registry: versions pushed from a folder, and aliases such as production."""


@group.command("list")
@common
def models_list() -> None:
    """The team's models."""
    found = state().client().models.list(state().team)
    if state().json:
        output.print_json(found)
        return
    output.table(
        found,
        [
            ("SLUG", lambda m: m.slug),
            ("NAME", lambda m: m.name),
            ("LATEST", lambda m: _latest(m.raw.get("latest_version"))),
            ("ALIASES", lambda m: _aliases(m.raw.get("aliases"))),
            ("CREATED", lambda m: output.when(m.raw.get("created_at"))),
        ],
        empty="No models yet: `lattice models push NAME DIR` makes one.",
    )


def _latest(value: object) -> object:
    return value.get("number") if isinstance(value, dict) else value


def _aliases(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(
            f"{a.get('alias') or a.get('name')}={a.get('version')}"
            if isinstance(a, dict)
            else str(a)
            for a in value
        )
    return str(value or "")


@group.command("create")
@click.argument("name")
@click.option("--description", default="")
@common
def models_create(name: str, description: str) -> None:
    """Make an empty model NAME (a push makes its first version)."""
    model = state().client().models.create(name, team=state().team, description=description)
    if state().json:
        output.print_json(model)
        return
    output.note(f"Made model {model.slug}: `lattice models push {model.slug} DIR`.")


@group.command("versions")
@click.argument("model")
@common
def models_versions(model: str) -> None:
    """MODEL's versions."""
    found = state().client().models.versions(model, team=state().team)
    if state().json:
        output.print_json(found)
        return
    output.table(
        found,
        [
            ("VERSION", lambda v: v.number),
            ("STATUS", lambda v: v.status),
            ("ALIASES", lambda v: v.raw.get("aliases")),
            ("FILES", lambda v: v.raw.get("file_count")),
            ("SIZE", lambda v: output.size(v.raw.get("total_size"))),
            ("CREATED", lambda v: output.when(v.raw.get("created_at"))),
            ("MESSAGE", lambda v: v.message),
        ],
        empty="No versions yet.",
    )


@group.command("push")
@click.argument("model")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-m", "--message", default="", help="What changed in this version.")
@click.option(
    "--alias", default=None, help="Point this alias (e.g. production) at the new version."
)
@click.option("--workers", type=click.IntRange(1, 32), default=4, show_default=True)
@click.option("--no-create", is_flag=True, help="Refuse if MODEL does not exist yet.")
@common
def models_push(
    *, model: str, path: Path, message: str, alias: str | None, workers: int, no_create: bool
) -> None:
    """Upload the folder PATH as a new version of MODEL (made if missing). Resumable: after
    an interruption, run the same command again."""
    client, team = state().client(), state().team
    version, summary = run_transfer(
        model,
        lambda progress: client.models.push(
            model,
            path,
            team=team,
            message=message,
            alias=alias,
            workers=workers,
            create=not no_create,
            progress=progress,
        ),
    )
    if state().json:
        output.print_json(version)
        return
    aliased = f", alias {alias}" if alias else ""
    output.note(f"{model} version {version.number} ({version.status}{aliased}): {summary}.")


@group.group("alias")
def alias() -> None:
    """Aliases: names (production, staging) that point at a version."""


@alias.command("set")
@click.argument("model")
@click.argument("name")
@click.argument("version", type=int)
@common
def alias_set(model: str, name: str, version: int) -> None:
    """Point alias NAME of MODEL at VERSION."""
    found = state().client().models.set_alias(model, name, version, team=state().team)
    if state().json:
        output.print_json(found)
        return
    output.note(f"{model}: {name} -> version {version}.")


@alias.command("rm")
@click.argument("model")
@click.argument("name")
@common
def alias_rm(model: str, name: str) -> None:
    """Remove alias NAME of MODEL."""
    state().client().models.delete_alias(model, name, team=state().team)
    if state().json:
        output.print_json({"removed": name})
        return
    output.note(f"{model}: alias {name} removed.")


@group.command("download")
@click.argument("model")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option(
    "--version", "version", default=None, help="A version number or an alias (default: the latest)."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace local files whose bytes differ from the version's."
)
@common
def models_download(model: str, dest: Path, version: str | None, overwrite: bool) -> None:
    """Write MODEL's files (a version or alias, else the latest) under DEST."""
    client, team = state().client(), state().team
    chosen: int | str | None = int(version) if version and version.isdigit() else version
    written, summary = run_transfer(
        model,
        lambda progress: client.models.download(
            model, dest, version=chosen, team=team, progress=progress, overwrite=overwrite
        ),
    )
    if state().json:
        output.print_json({"path": str(written)})
        return
    output.note(f"Downloaded {model} to {written}: {summary}.")
