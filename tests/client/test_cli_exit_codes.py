"""The exit codes scripts rely on (docs/cli.md, "Exit codes"): by the kind of refusal, and
for ``lattice jobs run --follow`` the run's own, with distinct codes for the platform's
endings. The refusals' codes against a live server are in test_cli_refusals.py."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lattice.cli.jobs import run_exit_code
from lattice.cli.main import cli
from lattice.cli.output import exit_code_for
from lattice.errors import (
    AuthenticationFailed,
    BadRequest,
    Conflict,
    ConnectionFailed,
    LatticeError,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
    ServerError,
)
from lattice.types import Run
from tests.client.cli_helpers import environment, lattice


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (LatticeError("?"), 1),
        (BadRequest("?"), 1),
        (Conflict("?"), 1),
        (ServerError("?"), 1),
        (LatticeError("?", code="no_team"), 2),
        (AuthenticationFailed("?"), 3),
        (NotFound("?"), 4),
        (PermissionDenied("?"), 4),
        (PaymentRequired("?"), 5),
        (RateLimited("?"), 6),
        (ConnectionFailed("?"), 7),
    ],
)
def test_an_error_exits_by_its_kind(error, code):
    assert exit_code_for(error) == code


@pytest.mark.parametrize(
    ("status", "exit_code", "expected"),
    [
        ("succeeded", 0, 0),
        ("succeeded", None, 0),
        ("failed", 3, 3),
        ("failed", None, 1),
        ("timed_out", None, 124),
        ("timed_out", 137, 124),
        ("cancelled", None, 125),
        ("cancelled", 143, 125),
        ("lost", None, 126),
    ],
)
def test_a_followed_run_exits_as_the_run_did(status, exit_code, expected):
    assert run_exit_code(Run(number=1, status=status, exit_code=exit_code)) == expected


def test_an_unreachable_server_is_one_line(tmp_path):
    ran = lattice("whoami", url="http://127.0.0.1:9", token="lat_x", config=tmp_path / "c")

    assert ran.exit_code == 7
    assert ran.error_lines == [ran.stderr.strip()]
    assert ran.stderr.startswith("error: Could not reach http://127.0.0.1:9")


def test_not_signed_in_is_one_line(tmp_path):
    ran = lattice("notebooks", "list", url=None, token=None, config=tmp_path / "c")

    assert ran.exit_code == 3
    assert ran.stderr.strip() == (
        "error: No server: run `lattice login`, or set LATTICE_URL and LATTICE_TOKEN. "
        "(code: not_configured)"
    )


def test_a_bad_payload_is_a_usage_error(tmp_path):
    ran = lattice(
        "deployments",
        "invoke",
        "iris",
        "--data",
        "{not json",
        url="http://127.0.0.1:9",
        token="lat_x",
        config=tmp_path / "c",
    )

    assert ran.exit_code == 2
    assert "Invalid value for --data: not JSON" in ran.stderr


def test_lattice_debug_shows_the_traceback(tmp_path):
    env = environment("http://127.0.0.1:9", "lat_x", tmp_path / "c")

    with pytest.raises(ConnectionFailed):
        CliRunner().invoke(
            cli, ["whoami"], env={**env, "LATTICE_DEBUG": "1"}, catch_exceptions=False
        )


def test_a_missing_payload_file_is_a_usage_error(tmp_path):
    ran = lattice(
        "deployments",
        "invoke",
        "iris",
        "--data",
        f"@{tmp_path / 'nope.json'}",
        url="http://127.0.0.1:9",
        token="lat_x",
        config=tmp_path / "c",
    )

    assert ran.exit_code == 2
    assert "Invalid value for --data: cannot read" in ran.stderr
    assert "Traceback" not in ran.stderr


def test_the_payload_is_read_from_stdin(tmp_path):
    ran = lattice(
        "deployments",
        "invoke",
        "iris",
        url="http://127.0.0.1:9",
        token="lat_x",
        config=tmp_path / "c",
        stdin="{oops",
    )

    assert ran.exit_code == 2
    assert "Invalid value for --data: not JSON" in ran.stderr
