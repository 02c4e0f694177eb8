"""``lattice notebooks create`` then ``lattice notebooks start`` on the real Docker runtime
(the Scientific Python template's image) with the embedded worker: the start follows the
notebook's phases as the server reports them (one line each on stderr, as a headless run
shows them), exits 0 once it runs and prints the URL that opens it; ``lattice notebooks
stop`` stops it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from apps.core.tenancy import team_scope

if TYPE_CHECKING:
    from apps.teams.models import Team
    from tests.client.conftest import Lattice

pytestmark = pytest.mark.docker

ORDER = ["queued", "scheduled", "pulling", "starting", "running"]


def notebook_named(team: Team, name: str) -> Any:
    from apps.notebooks.models import Notebook

    with team_scope(team):
        return Notebook.objects.get(name=name)


@pytest.mark.usefixtures("docker_host")
def test_start_follows_the_phases_to_ready_and_prints_the_url_then_stop_stops(
    lattice: Lattice, acme: Team, lattice_url: str
) -> None:
    from apps.notebooks.models import Status

    made = lattice(
        "notebooks", "create", "Analysis", "--machine-type", "cpu-small", "--template", "scipy"
    )
    assert made.code == 0, made
    notebook = notebook_named(acme, "Analysis")
    assert notebook.status == Status.STOPPED

    started = lattice("notebooks", "start", "Analysis", "--timeout", "240", timeout=300)

    assert started.code == 0, started
    notebook.refresh_from_db()
    assert notebook.status == Status.RUNNING, notebook.status
    lines = [line.strip() for line in started.err.splitlines() if line.strip()]
    # The phases the server went through on the way, in order: "<status>: <words>" each.
    statuses = [line.split(":")[0] for line in lines if line.split(":")[0] in ORDER]
    in_order = [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]
    assert in_order == sorted(set(in_order), key=ORDER.index), lines
    assert {"scheduled", "starting", "running"} <= set(in_order), lines
    assert in_order[-1] == "running", lines
    assert any("is ready" in line for line in lines), lines
    assert "Traceback" not in started.err, started
    url = started.out.strip().splitlines()[-1]
    assert url.startswith("http"), started
    assert f"/nb/{notebook.pk}" in url or f"nb-{notebook.pk}." in url, url

    stopped = lattice("notebooks", "stop", "Analysis", timeout=120)

    assert stopped.code == 0, stopped
    deadline = time.monotonic() + 90
    while notebook.status != Status.STOPPED and time.monotonic() < deadline:
        time.sleep(0.5)
        notebook.refresh_from_db()
    assert notebook.status == Status.STOPPED, notebook.status
