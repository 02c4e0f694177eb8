"""``--json`` prints the result as JSON on stdout and nothing else there, before the area
(``lattice --json teams list``) or after the command (``lattice teams list --json``)."""

from __future__ import annotations

import json

import pytest

from tests.client.cli_helpers import lattice
from tests.helpers import make_token

pytestmark = pytest.mark.django_db(transaction=True)


def test_json_before_the_area(asgi_live_server, alice, acme, tmp_path):
    _, token = make_token(alice)

    ran = lattice(
        "--json", "teams", "list", url=asgi_live_server, token=token, config=tmp_path / "c"
    )

    assert ran.exit_code == 0, ran.stderr
    teams = json.loads(ran.stdout)
    assert "acme" in {t["slug"] for t in teams}
    assert all("role" in t for t in teams)


def test_json_after_the_command_with_the_team(asgi_live_server, alice, acme, catalogue, tmp_path):
    _, token = make_token(alice)

    ran = lattice(
        "machine-types",
        "list",
        "--team",
        "acme",
        "--json",
        url=asgi_live_server,
        token=token,
        config=tmp_path / "c",
    )

    assert ran.exit_code == 0, ran.stderr
    types = json.loads(ran.stdout)
    assert {t["slug"] for t in types} == set(catalogue)
    assert all(t["availability"]["state"] in {"available", "busy", "unavailable"} for t in types)


def test_json_of_whoami_and_an_empty_list(asgi_live_server, alice, acme, tmp_path):
    _, token = make_token(alice)
    env = {"url": asgi_live_server, "token": token, "config": tmp_path / "c", "team": "acme"}

    me = lattice("whoami", "--json", **env)
    notebooks = lattice("notebooks", "list", "--json", **env)

    assert json.loads(me.stdout)["email"] == "alice@example.com"
    assert json.loads(notebooks.stdout) == []
    assert notebooks.stderr == ""  # no "Nothing yet" note in JSON mode either
