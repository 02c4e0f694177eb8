"""PostgreSQL and Redis servers of the fault suite's own: restarting one touches nothing else.

``PrivatePostgres``: a cluster made with ``initdb`` (/usr/lib/postgresql/*/bin) as the
``postgres`` OS user in a temporary folder it owns, password authentication (scram) for the
layout's user and password, listening on 127.0.0.1 at a free port, its unix socket in its own
folder, fsync off (a test's data need not survive the machine: a killed server's writes are
in the page cache still) but commits synchronous as production's (an asynchronous commit is
lost with a killed server: a session the API had made vanished in the PostgreSQL kill test).
``PrivateRedis``:
``redis-server --appendonly yes`` (as docker-compose.yml's redis runs it) on 127.0.0.1 at a
free port, its own ``--dir``.

Each: ``start()`` (waits until it answers), ``stop()`` (a clean shutdown: PostgreSQL's fast
one, SIGINT; Redis's SIGTERM), ``kill()`` (SIGKILL to the server and every process it
started), ``restart()`` (stop, start), ``running()``, ``url``; ``remove()`` stops it and
removes its folder. Both run in a process group of their own (``kill`` reaches PostgreSQL's
backends too).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.platform.layout import free_port

START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise FileNotFoundError("no /usr/lib/postgresql/*/bin/initdb")
    return found[-1].parent


class _Server:
    """A server process in its own process group, its log in its folder."""

    folder: Path
    process: subprocess.Popen[bytes] | None = None
    name = "server"

    def argv(self) -> list[str]:
        raise NotImplementedError

    def user(self) -> str | None:
        return None

    def answers(self) -> bool:
        raise NotImplementedError

    def start(self) -> None:
        if self.running():
            return
        log = (self.folder / f"{self.name}.log").open("ab")
        log.write(f"\n--- start {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        self.process = subprocess.Popen(
            self.argv(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=self.user(),
            cwd=self.folder,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start:\n{self.log()[-3000:]}")
            time.sleep(0.1)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _stop_signal(self) -> signal.Signals:
        return signal.SIGTERM

    def stop(self) -> None:
        """A clean shutdown; SIGKILL after STOP_TIMEOUT."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, self._stop_signal())
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self._reap()

    def kill(self) -> None:
        """SIGKILL to the server and every process of its group, at once."""
        if self.process is None:
            return
        self._reap()
        self.process.wait(timeout=STOP_TIMEOUT)

    def _reap(self) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        path = self.folder / f"{self.name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class PrivatePostgres(_Server):
    name = "postgres"

    def __init__(self, user: str, password: str) -> None:
        self.user_name = user
        self.password = password
        self.port = free_port()
        self.bin = _postgres_bin()
        # Not under pytest's temporary folder: the postgres OS user cannot reach it.
        self.folder = Path(tempfile.mkdtemp(prefix="lattice-faults-pg-", dir="/var/tmp"))
        shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.socket_dir = self.folder / "socket"
        self.socket_dir.mkdir()
        shutil.chown(self.socket_dir, "postgres", "postgres")
        pwfile = self.folder / "pwfile"
        pwfile.write_text(password + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        made = subprocess.run(
            [
                str(self.bin / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                user,
                "--pwfile",
                str(pwfile),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--no-sync",
            ],
            user="postgres",
            cwd=self.folder,
            capture_output=True,
            text=True,
            check=False,
        )
        pwfile.unlink()
        if made.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{made.stdout}\n{made.stderr}")

    def user(self) -> str | None:
        return "postgres"

    def argv(self) -> list[str]:
        return [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.socket_dir}",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ]

    def _stop_signal(self) -> signal.Signals:
        return signal.SIGINT  # "fast" shutdown: clients are disconnected, not waited for

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"postgres://{self.user_name}:{self.password}@{self.address}/postgres"

    def answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def admin(self) -> dict[str, str]:
        """The server as tests/platform/layout.py's run_layout takes it."""
        return {
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "USER": self.user_name,
            "PASSWORD": self.password,
        }


class PrivateRedis(_Server):
    name = "redis"

    def __init__(self) -> None:
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="lattice-faults-redis-", dir="/var/tmp"))

    def argv(self) -> list[str]:
        return [
            shutil.which("redis-server") or "redis-server",
            # docker-compose.yml's redis: ["redis-server", "--appendonly", "yes"]
            "--appendonly",
            "yes",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
        ]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.address}/0"

    def answers(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()
