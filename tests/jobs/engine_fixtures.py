"""The engine's test pieces: a job made as a row (the engine's tests are about runs, not
the services' validation), a host on the process or the Docker runtime, and waiting for a
run to reach a status (the agent's watcher speaks from its own thread)."""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

import pytest

from apps.core import stream
from apps.jobs import outputs
from apps.jobs.models import Attempt, Job, Run
from apps.machines.inventory import collect
from apps.machines.models import MachineType, Placement
from apps.machines.services import host_ensure_local
from apps.runtimes import select

if TYPE_CHECKING:
    from collections.abc import Iterator

    from apps.machines.models import Host


def make_job(team: Any, actor: Any, command: str, **fields: Any) -> Job:
    values: dict[str, Any] = {
        "name": "Train",
        "slug": "train",
        "source": Job.Source.NONE,
        "command": command,
        "machine_type": MachineType.objects.get(slug="cpu-small"),
        "template": "scipy",
        "output": Job.Output.NONE,
        "max_attempts": 3,
        "grace_seconds": 5,
        "timeout_seconds": 600,
        **fields,
    }
    return Job.objects.for_team(team).create(team=team, created_by=actor, **values)


def wait_for(run: Run, *statuses: str, seconds: float = 60) -> Run:
    """``run`` once it is in one of ``statuses`` (read again twice a second)."""
    deadline = time.monotonic() + seconds
    while True:
        run.refresh_from_db()
        if run.status in statuses or time.monotonic() > deadline:
            assert run.status in statuses, (run.status, run.status_message)
            return run
        time.sleep(0.25)


def attempts_of(run: Run) -> list[Attempt]:
    return list(Attempt.objects.for_team(run.team_id).filter(run=run).order_by("number"))


def placement_of(attempt: Attempt) -> Placement:
    assert attempt.placement_id is not None
    return Placement.objects.get(pk=attempt.placement_id)


def log_lines(run: Run) -> list[str]:
    return [
        line
        for message in stream.stream_after(run.stream, 0)
        if message.get("type") == "logs"
        for line in message["lines"]
    ]


@pytest.fixture
def no_outputs(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """apps.jobs.outputs is another helper's (its collect is a stub here): nothing to save,
    and each call recorded."""
    calls: list[Any] = []

    def collect_nothing(run: Run, attempt: Attempt) -> bool:
        calls.append((run.pk, attempt.pk))
        return False

    monkeypatch.setattr(outputs, "outputs_collect", collect_nothing)
    return calls


@pytest.fixture
def process_host(settings: Any, tmp_path: Any, catalogue: Any) -> Iterator[Host]:
    settings.LATTICE_RUNTIME = "process"
    settings.LATTICE_RUNTIME_DIR = tmp_path / "runtime"
    select._runtime.cache_clear()
    stream.reset_for_tests()
    yield host_ensure_local(name="local", inventory=collect(), runtime="process")
    runtime = select.host_runtime()
    for managed in runtime.list_managed():
        runtime.stop(managed.state, timeout=3)
    select._runtime.cache_clear()
    shutil.rmtree(tmp_path / "runtime", ignore_errors=True)
