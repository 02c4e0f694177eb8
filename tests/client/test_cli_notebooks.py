"""``lattice notebooks create|list|open|delete`` against a real server (starting one to ready
needs Docker: the live story, test_live_*.py)."""

from __future__ import annotations

import json

import pytest

from tests.client.cli_helpers import lattice
from tests.helpers import make_token

pytestmark = pytest.mark.django_db(transaction=True)


def test_create_list_delete(asgi_live_server, alice, acme, catalogue, tmp_path):
    _, token = make_token(alice)
    env = {"url": asgi_live_server, "token": token, "config": tmp_path / "c", "team": "acme"}

    made = lattice(
        "notebooks",
        "create",
        "exp1",
        "--machine-type",
        "cpu-small",
        "--template",
        "scipy",
        "--json",
        **env,
    )

    assert made.exit_code == 0, made.stderr
    notebook = json.loads(made.stdout)
    assert (notebook["name"], notebook["status"]) == ("exp1", "stopped")

    listed = lattice("notebooks", "list", **env)

    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:4] == [
        str(notebook["id"]),
        "exp1",
        "stopped",
        "cpu-small",
    ]

    refused = lattice("notebooks", "delete", "exp1", **env, stdin="n\n")

    assert refused.exit_code == 1
    assert lattice("notebooks", "list", "--json", **env).stdout.count('"exp1"') == 1

    deleted = lattice("notebooks", "delete", "exp1", "--yes", **env)

    assert deleted.exit_code == 0, deleted.stderr
    assert json.loads(lattice("notebooks", "list", "--json", **env).stdout) == []
    gone = lattice("notebooks", "stop", "exp1", **env)
    assert gone.exit_code == 4
    assert gone.stderr.startswith("error: ")
