"""``lattice datasets``: list, create, versions, upload (resumable, parallel), download."""

from __future__ import annotations

from pathlib import Path

import click

from lattice.cli import output
from lattice.cli.context import common, state
from lattice.cli.transfers import run_transfer


@click.group("datasets")
def group() -> None:
    """Versioned datasets: upload a folder, download a version."""


@group.command("list")
@common
def datasets_list() -> None:
    """The team's datasets."""
    found = state().client().datasets.list(state().team)
    if state().json:
        output.print_json(found)
        return
    output.table(
        found,
        [
            ("SLUG", lambda d: d.slug),
            ("NAME", lambda d: d.name),
            ("VISIBILITY", lambda d: d.raw.get("visibility")),
            ("VERSIONS", lambda d: _count(d.raw.get("versions"))),
            ("CREATED", lambda d: output.when(d.raw.get("created_at"))),
        ],
        empty="No datasets yet: `lattice datasets upload NAME DIR` makes one.",
    )


def _count(value: object) -> object:
    return len(value) if isinstance(value, list) else value


@group.command("create")
@click.argument("name")
@click.option("--description", default="", help="What it holds.")
@common
def datasets_create(name: str, description: str) -> None:
    """Make an empty dataset NAME (an upload makes its first version)."""
    dataset = state().client().datasets.create(name, team=state().team, description=description)
    if state().json:
        output.print_json(dataset)
        return
    output.note(f"Made dataset {dataset.slug}: `lattice datasets upload {dataset.slug} DIR`.")


@group.command("versions")
@click.argument("dataset")
@common
def datasets_versions(dataset: str) -> None:
    """DATASET's versions."""
    found = state().client().datasets.versions(dataset, team=state().team)
    if state().json:
        output.print_json(found)
        return
    output.table(
        found,
        [
            ("VERSION", lambda v: v.number),
            ("STATUS", lambda v: v.status),
            ("FILES", lambda v: v.raw.get("file_count")),
            ("SIZE", lambda v: output.size(v.raw.get("total_size"))),
            ("CREATED", lambda v: output.when(v.raw.get("created_at"))),
            ("MESSAGE", lambda v: v.message),
        ],
        empty="No versions yet.",
    )


@group.command("upload")
@click.argument("dataset")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("-m", "--message", default="", help="What changed in this version.")
@click.option(
    "--workers",
    type=click.IntRange(1, 32),
    default=4,
    show_default=True,
    help="Chunks sent at once.",
)
@click.option("--no-create", is_flag=True, help="Refuse if DATASET does not exist yet.")
@click.option("--allow-identical", is_flag=True, help="Make a version even if nothing changed.")
@common
def datasets_upload(
    *, dataset: str, path: Path, message: str, workers: int, no_create: bool, allow_identical: bool
) -> None:
    """Upload the folder (or file) PATH as a new version of DATASET (made if missing).

    Resumable: after Ctrl-C or a dropped connection, run the same command again; chunks the
    server already holds are not sent again.
    """
    client, team = state().client(), state().team
    version, summary = run_transfer(
        dataset,
        lambda progress: client.datasets.upload(
            dataset,
            path,
            team=team,
            message=message,
            workers=workers,
            create=not no_create,
            allow_identical=allow_identical,
            progress=progress,
        ),
    )
    if state().json:
        output.print_json(version)
        return
    output.note(f"{dataset} version {version.number} ({version.status}): {summary}.")


@group.command("download")
@click.argument("dataset")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option(
    "--version", "version", type=int, default=None, help="A version number (default: the latest)."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace local files whose bytes differ from the version's."
)
@common
def datasets_download(dataset: str, dest: Path, version: int | None, overwrite: bool) -> None:
    """Write DATASET's files (a version, else the latest) under DEST."""
    client, team = state().client(), state().team
    written, summary = run_transfer(
        dataset,
        lambda progress: client.datasets.download(
            dataset, dest, version=version, team=team, progress=progress, overwrite=overwrite
        ),
    )
    if state().json:
        output.print_json({"path": str(written)})
        return
    output.note(f"Downloaded {dataset} to {written}: {summary}.")
