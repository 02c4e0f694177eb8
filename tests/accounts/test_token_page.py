"""The token page (issue 14): only scopes the API checks are offered, and a new token comes
with a ready ``curl`` command for this installation that works as shown."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

import apps.accounts
from apps.accounts.models import TOKEN_AREAS, TOKEN_SCOPES
from apps.accounts.tokens import TokenError, token_create
from tests.helpers import reauthenticate

pytestmark = pytest.mark.django_db


def _api_token_areas() -> set[str]:
    """Every ``token_area`` an API view checks (apps.accounts.api.permissions)."""
    areas: set[str] = set()

    def walk(patterns: list[URLPattern | URLResolver]) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns)
                continue
            view = getattr(pattern.callback, "cls", None)
            area = getattr(view, "token_area", None) if view is not None else None
            if isinstance(area, str):
                areas.add(area)

    api = next(
        p
        for p in get_resolver().url_patterns
        if isinstance(p, URLResolver) and p.namespace == "api"
    )
    walk(api.url_patterns)
    return areas


def test_the_scopes_offered_are_the_areas_the_api_checks(client, alice):
    assert set(TOKEN_AREAS) == _api_token_areas()
    # The deployments API (apps.deployments.api) checks its area: it is granted like any.
    assert "deployments" in _api_token_areas()

    client.force_login(alice)
    page = client.get(reverse("accounts:tokens")).content.decode()
    offered = set(re.findall(r'name="scope_(\w+)"', page))
    assert offered == set(TOKEN_AREAS)
    token_create(user=alice, name="x", scopes=["deployments:read", "deployments:write"])
    assert {"deployments:read", "deployments:write"} <= set(TOKEN_SCOPES)
    # Calling a deployment is a scope of its own, a checkbox beside the areas.
    assert 'name="invoke"' in page
    assert "deployments:invoke" in TOKEN_SCOPES
    with pytest.raises(TokenError):
        token_create(user=alice, name="y", scopes=["deployments:admin"])


def _curl(page: str) -> tuple[str, str]:
    """The header and the URL of the page's curl command."""
    shown = re.search(r'data-testid="token-curl"[^>]*>([^<]+)</pre>', page)
    assert shown, "no curl example on the page"
    words = shlex.split(shown.group(1).replace("&quot;", '"'))
    assert words[:2] == ["curl", "-H"]
    return words[2], words[3]


@pytest.mark.parametrize(
    ("form", "path"),
    [
        ({"scope_teams": "read"}, "/api/v1/teams/"),
        ({"scope_notebooks": "write"}, "/api/v1/teams/acme/notebooks/"),
        ({"scope_datasets": "read", "team": "acme"}, "/api/v1/teams/acme/datasets/"),
        ({"scope_models": "read", "team": "acme"}, "/api/v1/teams/acme/models/"),
        ({"scope_billing": "read"}, "/api/v1/plans/"),
    ],
)
def test_a_new_token_comes_with_a_curl_command_that_works(client, acme, alice, form, path):
    client.force_login(alice)
    reauthenticate(client)

    page = client.post(reverse("accounts:tokens"), {"name": "laptop", **form})

    assert page.status_code == 200
    text = page.content.decode()
    secret = re.search(r'id="new-token"[^>]*value="(lat_[^"]+)"', text)
    assert secret, "the new token is not shown"
    assert 'data-testid="copy-token"' in text
    header, url = _curl(text)
    assert header == f"Authorization: Bearer {secret.group(1)}"
    assert url == f"http://testserver{path}"  # this installation's address, a real endpoint
    client.logout()
    answered = client.get(path, headers={"Authorization": f"Bearer {secret.group(1)}"})
    assert answered.status_code == 200, answered.content


def _url_names() -> dict[str, str]:
    """Every named route (with its namespace), and the module of the view it calls."""
    names: dict[str, str] = {}

    def walk(patterns: list[URLPattern | URLResolver], namespace: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                walk(pattern.url_patterns, inner)
            elif pattern.name:
                names[f"{namespace}{pattern.name}"] = pattern.callback.__module__

    walk(get_resolver().url_patterns, "")
    return names


def test_accounts_names_no_route_of_an_app_above_it():
    """Accounts sits below teams, notebooks, datasets and billing: the curl example's URL
    comes from the hook those apps register (apps.accounts.hooks.example_urls), never from
    their route names written into accounts (a layer break lint-imports cannot see)."""
    names = _url_names()
    above = ("apps.teams", "apps.notebooks", "apps.datasets", "apps.billing", "apps.devtools")
    found = []
    for source in Path(apps.accounts.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                module = names.get(node.value)
                if module is not None and module.startswith(above):
                    found.append(f"{source.name}: {node.value} ({module})")
    assert found == []
