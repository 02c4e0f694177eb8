"""What the command writes, and where: results on stdout (a table, or JSON with ``--json``),
everything else (progress, phases, notes) on stderr, so ``lattice ... --json | jq`` reads
nothing but the result.

Errors become one line on stderr and an exit code by kind (``exit_code_for``; the table is
in docs/cli.md and ``EXIT_CODES``)."""

from __future__ import annotations

import json
import sys
from dataclasses import is_dataclass
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lattice.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    LatticeError,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

# Exit codes: documented in docs/cli.md ("Exit codes"); scripts rely on them.
EXIT_OK = 0
EXIT_ERROR = 1  # any other refusal or failure (400, 409, 5xx, a failed notebook)
EXIT_USAGE = 2  # a mistyped command or option (click's own), bad --data, no team chosen
EXIT_AUTH = 3  # 401: no token, or a wrong, expired or revoked one
EXIT_NOT_FOUND = 4  # 404 or 403: missing, or not this token's to see (an outsider's team)
EXIT_PLAN = 5  # 402: the team's plan or spend cap does not allow it
EXIT_RATE_LIMITED = 6  # 429: too many requests; try again later
EXIT_UNREACHABLE = 7  # no answer from the server
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells do)

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_ERROR: "an error (the server refused, or something failed)",
    EXIT_USAGE: "usage: a mistyped command or option, bad input, no team chosen",
    EXIT_AUTH: "not signed in, or the token is wrong, expired or revoked (401)",
    EXIT_NOT_FOUND: "not found, or not yours to see (404, 403)",
    EXIT_PLAN: "the team's plan does not allow it (402)",
    EXIT_RATE_LIMITED: "rate limited: too many requests (429)",
    EXIT_UNREACHABLE: "the server could not be reached",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

_USAGE_CODES = {"no_team", "bad_input"}
_KIB = 1024


def exit_code_for(error: LatticeError) -> int:
    """The exit code for ``error``, by its kind (see ``EXIT_CODES``)."""
    if error.code in _USAGE_CODES:
        return EXIT_USAGE
    if error.code == "not_configured":  # no server or no token: not signed in
        return EXIT_AUTH
    for kind, code in (
        (AuthenticationFailed, EXIT_AUTH),
        (NotFound, EXIT_NOT_FOUND),
        (PermissionDenied, EXIT_NOT_FOUND),
        (PaymentRequired, EXIT_PLAN),
        (RateLimited, EXIT_RATE_LIMITED),
        (ConnectionFailed, EXIT_UNREACHABLE),
    ):
        if isinstance(error, kind):
            return code
    return EXIT_ERROR


def error_line(error: LatticeError) -> str:
    """``error: <message> (code: <code>)``: one line, whatever the message held."""
    message = " ".join(str(error).split()) or type(error).__name__
    code = error.code if error.code not in ("error", "") else None
    suffix = f" (code: {code})" if code else ""
    if isinstance(error, RateLimited) and error.retry_after:
        suffix += f"; retry in {error.retry_after:.0f} s"
    return f"error: {message}{suffix}"


class Failure(click.ClickException):
    """A failure the command reports as one line on stderr and ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR, *, prefix: bool = True):
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance
        self.prefix = prefix

    def format_message(self) -> str:
        return f"error: {self.message}" if self.prefix else self.message

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)

    @classmethod
    def of(cls, error: LatticeError, *, hint: str = "") -> Failure:
        line = error_line(error)
        return cls(f"{line} {hint}".strip(), exit_code_for(error), prefix=False)


def stdout() -> Console:
    """Tables and plain results: stdout. Built per call, so tests' captured streams apply."""
    return Console(file=sys.stdout, soft_wrap=False, highlight=False)


def stderr() -> Console:
    """Progress, phases and notes: stderr."""
    return Console(file=sys.stderr, highlight=False)


def raw_of(value: Any) -> Any:
    """What ``--json`` prints for a typed result (its ``raw``), a list of them, or plain data."""
    if isinstance(value, list | tuple):
        return [raw_of(v) for v in value]
    if is_dataclass(value) and hasattr(value, "raw"):
        return value.raw
    return value


def print_json(value: Any) -> None:
    click.echo(json.dumps(raw_of(value), indent=2, default=str, ensure_ascii=False))


def print_json_line(value: Any) -> None:
    """One JSON document per line (NDJSON), for followed streams."""
    click.echo(json.dumps(raw_of(value), default=str, ensure_ascii=False))


def note(message: str) -> None:
    """A line for the person, never for a script: stderr."""
    click.echo(message, err=True)


def table(
    rows: Iterable[Any],
    columns: Sequence[tuple[str, Callable[[Any], Any]]],
    *,
    empty: str = "Nothing yet.",
) -> None:
    """A table of ``rows`` with ``columns`` (title, cell of a row); ``empty`` when none."""
    rows = list(rows)
    if not rows:
        note(empty)
        return
    grid = Table(box=None, header_style="bold", pad_edge=False)
    for title, _ in columns:
        grid.add_column(title, overflow="fold")
    for row in rows:
        grid.add_row(*(Text(_cell(cell(row))) for _, cell in columns))
    _print(grid)


def fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """One thing's fields, a name and value per line."""
    grid = Table(box=None, show_header=False, pad_edge=False)
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for name, value in pairs:
        grid.add_row(name, Text(_cell(value)))
    _print(grid)


def _print(renderable: Any) -> None:
    """Print to stdout; into a pipe or file without the padding after each line's last cell."""
    console = stdout()
    if console.is_terminal:
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items()) or "-"
    return str(value)


def size(num: Any) -> str:
    """Bytes as a person reads them (1.5 GiB)."""
    try:
        value = float(num)
    except (TypeError, ValueError):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < _KIB or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= _KIB
    return f"{value:.1f} TiB"


def when(value: Any) -> str:
    """An ISO timestamp, shortened to the minute (2026-03-10 09:15)."""
    text = str(value or "")
    return text[:16].replace("T", " ") if text else "-"
