"""``lattice``: the entry point (owner: helper "cli")."""

from __future__ import annotations

import click

from lattice import __version__


@click.group()
@click.version_option(__version__, prog_name="lattice")
def cli() -> None:
    """Lattice from the terminal."""


def main() -> None:
    cli()
