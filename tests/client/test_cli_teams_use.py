"""``lattice teams use SLUG`` saves the default team with the login; later commands act in it,
and ``--team`` still wins for one command."""

from __future__ import annotations

import json

import pytest

from tests.client.cli_helpers import lattice
from tests.helpers import make_token

pytestmark = pytest.mark.django_db(transaction=True)


def test_use_saves_the_default_team(asgi_live_server, alice, acme, tmp_path):
    from apps.teams.models import Role
    from tests.factories import TeamFactory, add_member

    initech = TeamFactory.create(name="Initech", slug="initech")
    add_member(initech, alice, Role.MEMBER)
    _, token = make_token(alice)
    config = tmp_path / "config.json"
    env = {"url": None, "token": None, "config": config}
    lattice("login", "--url", asgi_live_server, "--token-stdin", stdin=token, **env)

    ambiguous = lattice("teams", "members", **env)
    used = lattice("teams", "use", "initech", **env)
    members = lattice("teams", "members", "--json", **env)
    chosen = lattice("teams", "members", "--json", "--team", "acme", **env)

    assert ambiguous.exit_code == 2
    assert ambiguous.stderr.startswith("error: Say which team")
    assert used.exit_code == 0, used.stderr
    assert json.loads(config.read_text())["team"] == "initech"
    assert [m["email"] for m in json.loads(members.stdout)] == ["alice@example.com"]
    assert {m["email"] for m in json.loads(chosen.stdout)} == {
        "alice@example.com",
        "bob@example.com",
    }


def test_use_refuses_an_outsiders_team(asgi_live_server, alice, acme, globex, tmp_path):
    _, token = make_token(alice)
    config = tmp_path / "config.json"

    ran = lattice("teams", "use", "globex", url=asgi_live_server, token=token, config=config)

    assert ran.exit_code == 4
    assert ran.stderr.startswith("error: ")
    assert not config.exists()
