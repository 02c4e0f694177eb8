"""``lattice jobs run JOB --follow`` on the real Docker runtime (the Scientific Python
template's image) and the embedded worker: the run's output reaches the terminal while it
runs (``hello`` is printed seconds before the run ends), and the command exits with the
run's own exit code: 3 for ``echo hello; sleep 4; exit 3``, 0 for a command that
succeeds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from apps.core.tenancy import team_scope
from tests.client.conftest import follow
from tests.jobs.engine_fixtures import make_job

if TYPE_CHECKING:
    from apps.accounts.models import User
    from apps.teams.models import Team
    from tests.client.conftest import Lattice

pytestmark = pytest.mark.docker


def run_of(job: Any) -> Any:
    from apps.jobs.models import Run

    with team_scope(job.team_id):
        return Run.objects.get(job=job)


@pytest.mark.usefixtures("docker_host")
def test_a_followed_run_prints_its_output_and_exits_with_its_exit_code(
    lattice: Lattice, acme: Team, alice: User
) -> None:
    from apps.jobs.models import Run

    failing = make_job(
        acme,
        alice,
        "echo hello; sleep 4; exit 3",
        name="Says hello",
        slug="says-hello",
        max_attempts=1,
    )

    followed = follow(lattice.start("jobs", "run", "Says hello", "--follow"))

    assert followed.code == 3, followed
    assert "hello" in followed.out, followed
    assert "Traceback" not in followed.err, followed
    # Streamed: "hello" came while the run was still running, not with its end.
    [hello_at] = [at for at, line in followed.lines if line == "hello"]
    assert followed.ended_at - hello_at > 2, followed
    run = run_of(failing)
    assert (run.status, run.exit_code) == (Run.Status.FAILED, 3), run.status_message


@pytest.mark.usefixtures("docker_host")
def test_a_followed_run_that_succeeds_exits_0(lattice: Lattice, acme: Team, alice: User) -> None:
    from apps.jobs.models import Run

    job = make_job(acme, alice, "echo all good", name="Goes well", slug="goes-well")

    ran = lattice("jobs", "run", str(job.pk), "--follow", timeout=300)

    assert ran.code == 0, ran
    assert "all good" in ran.out.splitlines(), ran
    run = run_of(job)
    assert (run.status, run.exit_code) == (Run.Status.SUCCEEDED, 0), run.status_message
