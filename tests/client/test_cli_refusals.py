"""Each refusal the server can give a command ends as one line on stderr, ``error: <the
server's message> (code: <its code>)``, and an exit code by kind; never a traceback.

Run as the installed script in a process of its own: the exit code and stderr a shell sees.
"""

from __future__ import annotations

import pytest

from tests.client.cli_helpers import Ran, lattice_process
from tests.helpers import make_token

pytestmark = pytest.mark.django_db(transaction=True)


def one_line(ran: Ran) -> str:
    assert "Traceback" not in ran.stderr
    assert ran.stdout == ""
    assert len(ran.error_lines) == 1, ran.stderr
    assert ran.error_lines[0].startswith("error: ")
    return ran.error_lines[0]


def test_a_wrong_token(asgi_live_server, alice, acme, tmp_path):
    ran = lattice_process(
        "teams", "list", url=asgi_live_server, token="lat_wrongwrongwrong", config=tmp_path / "c"
    )

    assert ran.exit_code == 3
    assert "(code: " in one_line(ran)


def test_an_outsiders_team(asgi_live_server, alice, acme, globex, tmp_path):
    _, token = make_token(alice)

    ran = lattice_process(
        "notebooks",
        "list",
        "--team",
        "globex",
        url=asgi_live_server,
        token=token,
        config=tmp_path / "c",
    )

    assert ran.exit_code == 4
    assert one_line(ran).endswith("(code: not_found)")


def test_a_plan_limit(asgi_live_server, alice, acme, stripe_double, tmp_path):
    """A Free team's datasets are public: a private one (the default) is a 402."""
    _, token = make_token(alice)

    ran = lattice_process(
        "datasets",
        "create",
        "Secret",
        url=asgi_live_server,
        token=token,
        config=tmp_path / "c",
        team="acme",
    )

    assert ran.exit_code == 5
    line = one_line(ran)
    assert "On the Free plan datasets are public." in line
    assert line.endswith("(code: plan_private_datasets)")


def test_too_many_requests(asgi_live_server, alice, acme, settings, tmp_path):
    settings.LATTICE_API_RATES = {**settings.LATTICE_API_RATES, "token": "2/hour"}
    _, token = make_token(alice)
    env = {"url": asgi_live_server, "token": token, "config": tmp_path / "c", "team": "acme"}
    assert lattice_process("datasets", "create", "one", **env).exit_code == 0
    assert lattice_process("datasets", "create", "two", **env).exit_code == 0

    ran = lattice_process("datasets", "create", "three", **env)

    assert ran.exit_code == 6
    assert "(code: throttled)" in one_line(ran)
