"""``lattice notebooks start`` follows the start's phases on stderr until the notebook runs,
then prints the URL that opens it on stdout; a start that fails is one line and exit 1.
On the fake runtime (the same on Docker is the live story, test_live_*.py)."""

from __future__ import annotations

import json

import pytest

from apps.runtimes import select
from tests.client.cli_helpers import lattice
from tests.helpers import make_token

pytestmark = pytest.mark.django_db(transaction=True)


def test_start_shows_the_phases_then_the_url(
    asgi_live_server, alice, acme, host, settings, embedded_celery, tmp_path
):
    settings.LATTICE_RUNTIME = "fake:pulls"
    select._runtime.cache_clear()
    _, token = make_token(alice)
    env = {"url": asgi_live_server, "token": token, "config": tmp_path / "c", "team": "acme"}
    made = json.loads(
        lattice(
            "notebooks", "create", "Puller", "--machine-type", "cpu-small", "--json", **env
        ).stdout
    )

    ran = lattice("notebooks", "start", "Puller", "--timeout", "60", **env)

    assert ran.exit_code == 0, ran.stderr
    phases = ran.stderr.splitlines()
    assert phases[0] == "Starting Puller..."
    assert any(line.startswith("pulling: ") and "%)" in line for line in phases), phases
    assert phases[-1] == f"Puller is ready. Open it with `lattice notebooks open {made['id']}`, or:"
    [url] = ran.stdout.splitlines()
    assert url.startswith("http://")
    assert f"/{made['id']}" in url or "/nb/" in url

    opened = lattice("notebooks", "open", "Puller", "--no-browser", **env)

    assert opened.stdout.strip() == url
    lattice("notebooks", "stop", "Puller", **env)


def test_a_failed_start_is_one_line(asgi_live_server, alice, acme, host, settings, tmp_path):
    settings.LATTICE_RUNTIME = "fake:crashes"
    select._runtime.cache_clear()
    _, token = make_token(alice)
    env = {"url": asgi_live_server, "token": token, "config": tmp_path / "c", "team": "acme"}
    lattice("notebooks", "create", "Crasher", "--machine-type", "cpu-small", **env)

    ran = lattice("notebooks", "start", "Crasher", "--timeout", "60", **env)

    assert ran.exit_code == 1
    assert ran.stdout == ""
    assert ran.stderr.splitlines()[-1].startswith("error: ")
    assert ran.stderr.splitlines()[-1].endswith("(code: notebook_failed)")
    assert "Traceback" not in ran.stderr
