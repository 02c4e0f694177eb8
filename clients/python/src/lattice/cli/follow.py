"""Printing followed streams (``logs -f``) and live phases, the same way for every area."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import click
from rich.markup import escape

from lattice.cli import output
from lattice.cli.context import state

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from lattice.types import LogLine


def print_lines(lines: Iterable[LogLine], *, logs_to_stderr: bool = False) -> LogLine | None:
    """Print a stream's log lines (stdout; stderr when ``logs_to_stderr``) and its status
    changes (stderr, as "-- status: words"); with --json, each message as a JSON line.
    Returns the last status change seen."""
    last: LogLine | None = None
    as_json = state().json and not logs_to_stderr
    for line in lines:
        if line.status is not None:
            last = line
        if as_json:
            output.print_json_line(
                line.raw or {"seq": line.seq, "text": line.text, "status": line.status}
            )
        elif line.status is not None:
            output.note(f"-- {line.status}: {line.text}" if line.text else f"-- {line.status}")
        elif logs_to_stderr:
            output.note(line.text)
        else:
            click.echo(line.text)
    return last


@contextlib.contextmanager
def live_status(first: str) -> Iterator[Callable[[str], None]]:
    """A status line on stderr that ``update(words)`` rewrites (a spinner on a terminal;
    one line per change otherwise, so logs of headless runs show every phase)."""
    console = output.stderr()
    if console.is_terminal:
        with console.status(escape(first)) as status:
            yield lambda words: status.update(escape(words))
        return
    seen: list[str] = []

    def update(words: str) -> None:
        if not seen or seen[-1] != words:
            seen.append(words)
            output.note(words)

    update(first)
    yield update
