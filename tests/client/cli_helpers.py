"""Running the ``lattice`` command against a live server, as a person's shell would: in
process with click's CliRunner (``lattice``), or as the installed script in a process of its
own (``lattice_process``) where the real exit code and streams matter.

Either way the command sees only the environment given here: the server's URL, a token, and
a config file under the test's tmp_path (never the real ``~/.config``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from lattice.cli.main import cli

SCRIPT = Path(sys.executable).with_name("lattice")
_ENV_NAMES = (
    "LATTICE_URL",
    "LATTICE_TOKEN",
    "LATTICE_TEAM",
    "LATTICE_CONFIG",
    "LATTICE_DEBUG",
    "XDG_STATE_HOME",
)


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def environment(
    url: str | None, token: str | None, config: Path, team: str | None = None
) -> dict[str, str | None]:
    return {
        "LATTICE_URL": url,
        "LATTICE_TOKEN": token,
        "LATTICE_TEAM": team,
        "LATTICE_CONFIG": str(config),
        "LATTICE_DEBUG": None,
        # The SDK's resumable uploads and hash cache: the test's own, beside its config.
        "XDG_STATE_HOME": str(config.parent / "state"),
        "COLUMNS": "200",  # tables as wide as a terminal, whatever the CI's width
    }


def lattice(
    *args: str,
    url: str | None,
    token: str | None,
    config: Path,
    team: str | None = None,
    stdin: str | None = None,
) -> Ran:
    """``lattice ARGS`` in this process (click's CliRunner); a bug's exception propagates."""
    result = CliRunner().invoke(
        cli,
        list(args),
        env=environment(url, token, config, team),
        input=stdin,
        catch_exceptions=False,
    )
    return Ran(result.exit_code, result.stdout, result.stderr)


def lattice_process(
    *args: str,
    url: str | None,
    token: str | None,
    config: Path,
    team: str | None = None,
    stdin: str | None = None,
    timeout: float = 60,
) -> Ran:
    """``lattice ARGS`` as the installed script in a process of its own."""
    env = {k: v for k, v in os.environ.items() if k not in _ENV_NAMES}
    env.update({k: v for k, v in environment(url, token, config, team).items() if v is not None})
    done = subprocess.run(
        [str(SCRIPT), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    return Ran(done.returncode, done.stdout, done.stderr)
