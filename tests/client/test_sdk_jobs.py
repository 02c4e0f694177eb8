"""The SDK's jobs against a live server, runs on the process runtime (each a local process,
Celery eager): run, follow the log to the run's end, the exit code, cancel, names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from lattice.errors import Conflict, NotFound
from tests.jobs.engine_fixtures import make_job

if TYPE_CHECKING:
    import lattice

pytestmark = pytest.mark.django_db(transaction=True)

JOB = {"source": "none", "machine_type": "cpu-small", "template": "scipy", "output": "none"}


def test_a_run_is_followed_to_its_end_and_keeps_its_exit_code(
    sdk: lattice.Client, process_host: Any, no_outputs: Any
) -> None:
    job = sdk.jobs.create("Train", command="echo hello from the job; sleep 1; exit 3", **JOB)

    run = sdk.jobs.run("Train")
    lines = list(sdk.jobs.logs("Train", run.number, follow=True))
    ended = sdk.jobs.wait(job.id, run.number, timeout=30)

    assert run.number == 1
    assert "hello from the job" in [line.text for line in lines if line.status is None]
    assert lines[-1].status == "failed"
    assert ended.status == "failed"
    assert ended.ended
    assert ended.exit_code == 3
    assert sdk.jobs.get_run("Train", 1).exit_code == 3
    assert [r.number for r in sdk.jobs.runs(job.id)] == [1]
    assert sdk.jobs.get("train").id == job.id
    assert sdk.jobs.list()[0].last_run is not None


def test_a_run_with_changes_then_cancelled(
    sdk: lattice.Client, process_host: Any, no_outputs: Any
) -> None:
    sdk.jobs.create("Sleeper", command="exit 0", **JOB)

    run = sdk.jobs.run("Sleeper", changes={"command": "sleep 30"})
    cancelled = sdk.jobs.cancel("Sleeper", run.number)
    ended = sdk.jobs.wait("Sleeper", run.number, timeout=30)

    assert run.raw["definition"]["command"] == "sleep 30"
    assert cancelled.raw["cancel_requested_at"] is not None
    assert ended.status == "cancelled"
    with pytest.raises(Conflict):
        sdk.jobs.cancel("Sleeper", run.number)


def test_a_name_two_jobs_answer_to_must_be_given_as_an_id(
    sdk: lattice.Client, acme: Any, alice: Any, catalogue: Any
) -> None:
    first = sdk.jobs.create("Nightly", command="true", **JOB)
    # The API refuses a second "Nightly"; a job renamed in the database has the name too
    # (only slugs are unique there).
    second = make_job(acme, alice, "true", name="Nightly", slug="nightly-again")

    with pytest.raises(Conflict) as ambiguous:
        sdk.jobs.get("Nightly")

    assert ambiguous.value.code == "ambiguous_name"
    assert f"{first.id}" in str(ambiguous.value)
    assert f"{second.pk}" in str(ambiguous.value)
    assert sdk.jobs.get(second.pk).slug == "nightly-again"
    assert sdk.jobs.get("nightly-again").id == second.pk
    with pytest.raises(NotFound):
        sdk.jobs.runs("Weekly")
