"""`lattice jobs run --follow`'s exit status: never 0 for a failed run, always in a shell's
range 1..255 for a failure (REVIEW18 R4)."""

from __future__ import annotations

from lattice.cli.jobs import run_exit_code
from lattice.types import Run


def test_follow_exits_non_zero_for_a_failed_run_whose_command_exited_0() -> None:
    # apps/jobs/runs._outputs_end: the command exited 0, its outputs failed to save, the run
    # ends "failed" with exit_code 0.
    run = Run.from_api(
        {
            "number": 3,
            "status": "failed",
            "exit_code": 0,
            "status_message": "The outputs could not be saved: disk full",
        }
    )

    assert run_exit_code(run) != 0


def test_follow_exit_codes_stay_in_a_shells_range() -> None:
    unknown = Run.from_api({"number": 1, "status": "failed", "exit_code": -1})
    wrapped = Run.from_api({"number": 2, "status": "failed", "exit_code": 256})

    # A shell sees the code modulo 256: -1 is 255 (not the documented 1 for "a failure
    # without an exit code"), 256 is 0 (success).
    assert run_exit_code(unknown) == 1
    assert run_exit_code(wrapped) % 256 != 0


def test_a_failed_runs_own_exit_code_and_success_stay_as_they_are() -> None:
    assert run_exit_code(Run.from_api({"number": 1, "status": "failed", "exit_code": 3})) == 3
    assert run_exit_code(Run.from_api({"number": 2, "status": "succeeded", "exit_code": 0})) == 0
