"""By default results are tables a person reads: a header row, one row per item."""

from __future__ import annotations

import pytest

from tests.client.cli_helpers import lattice
from tests.helpers import make_token

pytestmark = pytest.mark.django_db(transaction=True)


def rows(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.strip()]


def test_teams_and_members_tables(asgi_live_server, alice, acme, globex, tmp_path):
    _, token = make_token(alice)
    env = {"url": asgi_live_server, "token": token, "config": tmp_path / "c"}

    teams = lattice("teams", "list", **env)
    members = lattice("--team", "acme", "teams", "members", **env)

    assert teams.exit_code == 0, teams.stderr
    assert rows(teams.stdout)[0] == ["SLUG", "NAME", "ROLE", "DEFAULT"]
    assert ["acme", "Acme", "owner", "no"] in rows(teams.stdout)
    assert "globex" not in teams.stdout
    assert members.exit_code == 0, members.stderr
    assert rows(members.stdout)[0] == ["EMAIL", "NAME", "ROLE"]
    assert ["alice@example.com", "Alice", "Smith", "owner"] in rows(members.stdout)
    assert ["bob@example.com", "Bob", "Jones", "member"] in rows(members.stdout)


def test_machine_types_table_shows_availability(asgi_live_server, alice, acme, catalogue, tmp_path):
    _, token = make_token(alice)

    ran = lattice(
        "machine-types",
        "list",
        url=asgi_live_server,
        token=token,
        config=tmp_path / "c",
        team="acme",
    )

    assert ran.exit_code == 0, ran.stderr
    table = rows(ran.stdout)
    assert table[0][:2] == ["SLUG", "NAME"]
    assert table[0][-1] == "AVAILABILITY"
    assert {row[0] for row in table[1:]} == set(catalogue)
    assert all(
        row[-1] in {"available", "busy", "unavailable"} or row[-2] in {"available", "busy"}
        for row in table[1:]
    )


def test_an_empty_list_says_so_on_stderr(asgi_live_server, alice, acme, tmp_path):
    _, token = make_token(alice)

    ran = lattice(
        "datasets", "list", url=asgi_live_server, token=token, config=tmp_path / "c", team="acme"
    )

    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout == ""
    assert ran.stderr.startswith("No datasets yet")


def test_names_print_as_they_are_not_as_markup(asgi_live_server, alice, acme, catalogue, tmp_path):
    _, token = make_token(alice)
    env = {"url": asgi_live_server, "token": token, "config": tmp_path / "c", "team": "acme"}
    made = lattice(
        "notebooks", "create", "exp [bold]v2[/bold]", "--machine-type", "cpu-small", **env
    )
    assert made.exit_code == 0, made.stderr

    ran = lattice("notebooks", "list", **env)

    assert "exp [bold]v2[/bold]" in ran.stdout
