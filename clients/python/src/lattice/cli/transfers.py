"""Running an upload or download with its progress bar, and what an interruption says:
"Interrupted: run the same command again to resume" (exit 130), and the same advice after a
dropped connection, since the SDK's transfers resume where they stopped."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from lattice.cli import output
from lattice.cli.context import state
from lattice.cli.progress import TransferBar
from lattice.errors import ConnectionFailed, ServerError

if TYPE_CHECKING:
    from collections.abc import Callable

    from lattice.types import TransferProgress

T = TypeVar("T")

INTERRUPTED = "Interrupted: run the same command again to resume."
_RESUME_HINT = "Run the same command again to resume."


def run_transfer(
    label: str, work: Callable[[Callable[[TransferProgress], None] | None], T]
) -> tuple[T, str]:
    """``work(progress)`` under a progress bar (none with --json); its result and a summary."""
    try:
        if state().json:
            return work(None), ""
        with TransferBar(label) as bar:
            result = work(bar)
        return result, bar.summary()
    except KeyboardInterrupt:
        raise output.Failure(INTERRUPTED, output.EXIT_INTERRUPTED, prefix=False) from None
    except (ConnectionFailed, ServerError) as error:
        raise output.Failure.of(error, hint=_RESUME_HINT) from None
