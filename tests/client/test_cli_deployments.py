"""``lattice deployments create|list|status|delete`` against a real server, with the
controller's reconcile recorded instead of run (no replica starts here: invoking a running
deployment on Docker is the live story, test_live_*.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.client.cli_helpers import lattice
from tests.helpers import make_token
from tests.model_fixtures import make_model_version
from tests.notebook_fixtures import host_for_every_type

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def reconciles(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    from apps.deployments import controller

    seen: list[Any] = []
    monkeypatch.setattr(controller, "deployment_reconcile_soon", seen.append)
    return seen


def test_create_status_list_delete(
    asgi_live_server, alice, acme, catalogue, media, reconciles, tmp_path
):
    host_for_every_type()
    make_model_version(acme, alice, "Iris", {"predict.py": b"def predict(x): return x\n"})
    _, token = make_token(alice)
    env = {"url": asgi_live_server, "token": token, "config": tmp_path / "c", "team": "acme"}

    made = lattice(
        "deployments",
        "create",
        "Iris API",
        "--model",
        "iris",
        "--machine-type",
        "cpu-small",
        "--json",
        **env,
    )

    assert made.exit_code == 0, made.stderr
    slug = json.loads(made.stdout)["slug"]
    assert slug == "iris-api"
    assert reconciles

    status = lattice("deployments", "status", slug, **env)

    assert status.exit_code == 0, status.stderr
    assert status.stdout.splitlines()[0].split() == ["Name", "Iris", "API", "(iris-api)"]
    assert "REVISION" in status.stdout
    detail = json.loads(lattice("deployments", "status", slug, "--json", **env).stdout)
    assert [(r["model"], r["version"]) for r in detail["revisions"]] == [("iris", 1)]
    assert [
        row["slug"] for row in json.loads(lattice("deployments", "list", "--json", **env).stdout)
    ] == [slug]

    deleted = lattice("deployments", "delete", slug, "--yes", **env)

    assert deleted.exit_code == 0, deleted.stderr
    assert json.loads(lattice("deployments", "list", "--json", **env).stdout) == []


def test_invoke_refuses_an_unknown_deployment(asgi_live_server, alice, acme, tmp_path):
    _, token = make_token(alice)

    ran = lattice(
        "deployments",
        "invoke",
        "nope",
        stdin='{"x": 1}',
        url=asgi_live_server,
        token=token,
        config=tmp_path / "c",
        team="acme",
    )

    assert ran.exit_code == 4
    assert ran.stderr.startswith("error: ")
    assert len(ran.error_lines) == 1
