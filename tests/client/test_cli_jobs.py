"""``lattice jobs run --follow`` prints the run's log and exits as the run did: its own exit
code, or 125 when it is cancelled meanwhile. Runs on the process runtime (a local process,
Celery eager); the same story on Docker is the live one (test_live_*.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import lattice
from tests.client.cli_helpers import lattice as run_cli
from tests.helpers import make_token
from tests.jobs.engine_fixtures import no_outputs, process_host

__all__ = ["no_outputs", "process_host"]

pytestmark = pytest.mark.django_db(transaction=True)

JOB = {"source": "none", "machine_type": "cpu-small", "template": "scipy", "output": "none"}


def setup(url: str, alice: Any, tmp_path: Any) -> tuple[lattice.Client, dict[str, Any]]:
    _, token = make_token(alice)
    env = {"url": url, "token": token, "config": tmp_path / "c", "team": "acme"}
    return lattice.Client(url=url, token=token, team="acme"), env


def test_follow_exits_with_the_runs_exit_code(
    asgi_live_server, alice, acme, process_host, no_outputs, tmp_path
):
    sdk, env = setup(asgi_live_server, alice, tmp_path)
    sdk.jobs.create("Train", command="echo hello from the job; exit 3", **JOB)

    ran = run_cli("jobs", "run", "Train", "--follow", **env)

    assert ran.exit_code == 3, ran.stderr
    assert "hello from the job" in ran.stdout.splitlines()
    assert ran.stderr.splitlines()[-1] == "Run 1 failed (exit code 3)."
    runs = run_cli("jobs", "runs", "Train", **env)
    assert runs.stdout.splitlines()[1].split()[:3] == ["1", "failed", "3"]
    logs = run_cli("jobs", "logs", "Train", "1", **env)
    assert "hello from the job" in logs.stdout.splitlines()


def test_a_cancelled_run_exits_125(
    asgi_live_server, alice, acme, process_host, no_outputs, tmp_path
):
    sdk, env = setup(asgi_live_server, alice, tmp_path)
    sdk.jobs.create("Sleeper", command="echo sleeping; sleep 60", **JOB)

    def cancel_when_running() -> None:
        for _ in range(100):
            runs = sdk.jobs.runs("Sleeper")
            if runs and runs[0].status == "running":
                sdk.jobs.cancel("Sleeper", runs[0].number)
                return
            threading.Event().wait(0.2)

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    ran = run_cli("jobs", "run", "Sleeper", "--follow", **env)
    canceller.join()

    assert ran.exit_code == 125, ran.stderr
    assert ran.stderr.splitlines()[-1].startswith("Run 1 cancelled")
