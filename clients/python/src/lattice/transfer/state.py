"""What the transfer modules share: their error, the state folder (0600 JSON files) and
progress reports."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lattice.errors import LatticeError

if TYPE_CHECKING:
    from collections.abc import Callable

    from lattice.types import TransferProgress

# Progress from hashing is reported at most this often (seconds); the hash cache saved too.
REPORT_EVERY = 0.2


class TransferError(LatticeError):
    """The client refused or could not go on (a file it cannot send, an unsafe archive)."""


def state_dir() -> Path:
    """``$XDG_STATE_HOME/lattice`` (default ``~/.local/state/lattice``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lattice"


def write_private(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as JSON to ``path``, mode 0600, atomically (a temp file renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as stream:
            json.dump(data, stream)
            stream.flush()
            os.fsync(stream.fileno())
        temp.replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def notify(progress: Callable[[TransferProgress], None] | None, report: TransferProgress) -> None:
    """Hand ``report`` to ``progress`` when there is one."""
    if progress is not None:
        progress(report)
