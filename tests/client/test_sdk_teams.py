"""The SDK's teams, members and whoami against a live server, and how refusals map to its
errors: a wrong token, an outsider's team."""

from __future__ import annotations

import pytest

import lattice
from lattice.errors import AuthenticationFailed, NotFound

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_lists_alices_teams_with_her_role_and_acmes_members(sdk: lattice.Client) -> None:
    teams = {team.slug: team for team in sdk.teams.list()}

    assert teams["acme"].name == "Acme"
    assert teams["acme"].role == "owner"
    assert sdk.teams.get().slug == "acme"
    members = {m.email: m.role for m in sdk.teams.members()}
    assert members == {"alice@example.com": "owner", "bob@example.com": "member"}
    assert sdk.whoami().email == "alice@example.com"


def test_an_outsiders_team_is_not_found(sdk: lattice.Client, globex: object) -> None:
    with pytest.raises(NotFound) as refused:
        sdk.teams.members("globex")

    assert refused.value.status == 404
    assert refused.value.code == "not_found"
    assert str(refused.value)


def test_a_wrong_token_is_refused_with_the_servers_words(
    asgi_live_server: str, acme: object
) -> None:
    client = lattice.Client(url=asgi_live_server, token="lat_notarealtoken000", team="acme")

    with pytest.raises(AuthenticationFailed) as refused:
        client.teams.list()

    assert refused.value.status == 401
    assert refused.value.code in {"authentication_failed", "not_authenticated"}
    assert "token" in str(refused.value).lower()
