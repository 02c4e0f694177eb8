"""``lattice``: the root command, its global options, and the one place errors become a line
on stderr and an exit code (``LatticeGroup.invoke``): never a traceback, unless
``LATTICE_DEBUG=1`` asks for one."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from lattice import __version__
from lattice.cli import auth, datasets, deployments, jobs, machines, models, notebooks
from lattice.cli.context import State, json_option, team_option
from lattice.cli.output import EXIT_ERROR, EXIT_INTERRUPTED, Failure
from lattice.errors import LatticeError


def _debug() -> bool:
    return os.environ.get("LATTICE_DEBUG", "") not in ("", "0", "false", "no")


class LatticeGroup(click.Group):
    """The root group: whatever a command raises ends here as one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LatticeError as error:
            if _debug():
                raise
            raise Failure.of(error) from None
        except KeyboardInterrupt:
            if _debug():
                raise
            raise Failure("Interrupted.", EXIT_INTERRUPTED, prefix=False) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as error:  # a bug, or the OS refusing: still one line
            if _debug():
                raise
            detail = " ".join(str(error).split()) or type(error).__name__
            raise Failure(
                f"{detail} ({type(error).__name__}; LATTICE_DEBUG=1 shows the traceback)",
                EXIT_ERROR,
            ) from None


def _set_url(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.ensure_object(State).url = value


@click.group(cls=LatticeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="lattice")
@click.option(
    "--url",
    metavar="URL",
    expose_value=False,
    callback=_set_url,
    help="The server (else LATTICE_URL, or the one `lattice login` saved).",
)
@team_option
@json_option
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Lattice from the terminal: notebooks, datasets, models, deployments and jobs.

    Sign in once with `lattice login`; every command takes --json for scripts.
    Exit codes: see docs/cli.md.
    """
    ctx.ensure_object(State)


auth.register(cli)
cli.add_command(machines.group)
cli.add_command(notebooks.group)
cli.add_command(datasets.group)
cli.add_command(models.group)
cli.add_command(deployments.group)
cli.add_command(jobs.group)


def main() -> None:
    """The ``lattice`` script: run the command, show what ended it, exit with its code."""
    try:
        result = cli.main(prog_name="lattice", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    except click.exceptions.Exit as error:
        code = error.exit_code
    except click.Abort:  # a declined confirmation, or Ctrl-C while click prompted
        click.echo("Aborted.", err=True)
        code = EXIT_ERROR
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    if code == EXIT_INTERRUPTED:
        # Do not wait for a transfer's worker threads to finish their chunk: what the server
        # holds is kept, and running the command again resumes.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
