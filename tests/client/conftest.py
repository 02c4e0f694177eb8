"""What the client's live stories share: a live server (uvicorn serving config.asgi, with
the embedded worker), the local host on real Docker, and the ``lattice`` command run as a
real subprocess against it, the way a person runs it from a terminal.

The command runs as ``python -m lattice`` from this environment (the package is installed
editable), with its own config file, state and home in the test's tmp_path and none of the
caller's LATTICE_* settings: what it knows is what the test gives it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from apps.teams.models import Team

# The command as this environment runs it; a test of another environment passes its own.
PYTHON_M_LATTICE = (sys.executable, "-m", "lattice")


@dataclass(frozen=True)
class Ran:
    """One finished run of the command."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"lattice {' '.join(self.args)} -> exit {self.code}\n{self.out}\n{self.err}"


@dataclass
class Lattice:
    """Runs the ``lattice`` command in a subprocess with ``env`` (the whole environment)."""

    env: dict[str, str]
    cwd: Path
    command: Sequence[str] = field(default=PYTHON_M_LATTICE)

    def environment(self, **changes: str | None) -> dict[str, str]:
        env = dict(self.env)
        for name, value in changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def __call__(
        self, *args: str, stdin: str | None = None, timeout: float = 120, **env: str | None
    ) -> Ran:
        """Run ``lattice *args`` to its end (``stdin`` as its input); what it said."""
        result = subprocess.run(
            [*self.command, *args],
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.environment(**env),
            cwd=self.cwd,
            check=False,
        )
        return Ran(tuple(args), result.returncode, result.stdout, result.stderr)

    def start(self, *args: str, **env: str | None) -> subprocess.Popen[str]:
        """Start ``lattice *args`` and return at once (its output to pipes, stdin closed)."""
        return subprocess.Popen(
            [*self.command, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.environment(**env),
            cwd=self.cwd,
        )


@dataclass(frozen=True)
class Followed:
    """A run of the command read line by line as it printed: (when, line) per stdout line."""

    lines: list[tuple[float, str]]
    ended_at: float
    code: int
    err: str

    @property
    def out(self) -> list[str]:
        return [line for _, line in self.lines]


def follow(process: subprocess.Popen[str], timeout: float = 300) -> Followed:
    """Read ``process``'s stdout as it comes, noting when each line came, until it exits
    (killed after ``timeout`` seconds, so a hung command fails the test, not the suite)."""
    assert process.stdout is not None
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    try:
        lines = [(time.monotonic(), ln.rstrip("\n")) for ln in iter(process.stdout.readline, "")]
        ended_at = time.monotonic()
        code = process.wait()
        err = process.stderr.read() if process.stderr else ""
    finally:
        watchdog.cancel()
    return Followed(lines, ended_at, code, err)


def clean_environment(home: Path) -> dict[str, str]:
    """This process's environment without LATTICE_* and Django's settings; ``home`` as the
    home (the config file would go under it) and a wide, colourless terminal."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LATTICE_") and k != "DJANGO_SETTINGS_MODULE"
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        # The SDK's open uploads and hash cache: this test's own.
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_CACHE_HOME=str(home / ".cache"),
        LATTICE_CONFIG=str(home / "lattice.json"),
        NO_COLOR="1",
        TERM="dumb",
        COLUMNS="200",
        PYTHONUNBUFFERED="1",
        PYTHONIOENCODING="utf-8",
    )
    return env


@pytest.fixture
def lattice_url(asgi_live_server: str, embedded_celery: Any) -> str:
    """The base URL of uvicorn serving Lattice, with the embedded worker running tasks."""
    return asgi_live_server


@pytest.fixture
def lattice_cli(tmp_path: Path) -> Lattice:
    """The command with no server, token or team: what a fresh machine has."""
    return Lattice(env=clean_environment(tmp_path / "home"), cwd=tmp_path)


@pytest.fixture
def lattice(lattice_cli: Lattice, lattice_url: str, acme: Team, alice_token: str) -> Lattice:
    """The command as alice (owner of Acme) on the live server, team Acme, through the
    environment. (``alice_token``, a ``lat_`` token of hers, is tests.client.sdk_fixtures'.)"""
    env = lattice_cli.environment(
        LATTICE_URL=lattice_url, LATTICE_TOKEN=alice_token, LATTICE_TEAM="acme"
    )
    return Lattice(env=env, cwd=lattice_cli.cwd)


def _number_far_from_others(tables: tuple[str, ...], base: int) -> None:
    """Start ``tables``' ids at ``base`` plus a random offset: containers and volumes are
    named after notebooks, sessions, runs, attempts and replicas, on a Docker engine that
    other test runs share."""
    from django.db import connection

    start = base + secrets.randbelow(100_000) * 1_000
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, start])


@pytest.fixture
def docker_host(
    settings: Any,
    tmp_path: Path,
    lattice_url: str,
    docker_client: Any,
    scipy_image: str,
    catalogue: dict[str, Any],
) -> Iterator[Any]:
    """The local host on the real Docker runtime, its agent on the embedded worker's queue;
    blobs in a local folder that hosts read through this server's signed links. Only the
    containers and volumes this test run made are removed after."""
    from apps.machines.inventory import collect
    from apps.machines.services import host_ensure_local
    from apps.runtimes import select
    from tests.notebook_fixtures import remove_installation_workloads

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.LATTICE_DATASET_CACHE = tmp_path / "cache"
    settings.LATTICE_INTERNAL_URL = lattice_url
    settings.LATTICE_RUNTIME = "docker"
    select._runtime.cache_clear()
    _number_far_from_others(("notebooks_notebook", "notebooks_notebooksession"), 710_000_000)
    _number_far_from_others(("jobs_run", "jobs_attempt"), 610_000_000)
    _number_far_from_others(("deployments_replica",), 810_000_000)
    # Room for a few small containers at once, whatever this machine's own size.
    inventory = {**collect(), "cpu_count": 16, "memory_bytes": 64 * 1024**3}
    try:
        yield host_ensure_local(name="local", inventory=inventory, runtime="docker")
    finally:
        remove_installation_workloads(docker_client)
        select._runtime.cache_clear()
