"""``lattice login`` checks the token with the server, saves it readable by its owner only,
and later commands use it; a wrong token is refused and nothing is saved."""

from __future__ import annotations

import json
import stat

import pytest

from tests.client.cli_helpers import lattice, lattice_process
from tests.helpers import make_token

pytestmark = pytest.mark.django_db(transaction=True)


def test_login_saves_the_token_0600_and_whoami_uses_it(asgi_live_server, alice, acme, tmp_path):
    _, plaintext = make_token(alice)
    config = tmp_path / "lattice" / "config.json"

    login = lattice_process(
        "login",
        "--url",
        asgi_live_server,
        "--token-stdin",
        url=None,
        token=None,
        config=config,
        stdin=plaintext + "\n",
    )

    assert login.exit_code == 0, login.stderr
    assert "alice@example.com" in login.stderr
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text()) == {"url": asgi_live_server, "token": plaintext}

    whoami = lattice_process("whoami", url=None, token=None, config=config)

    assert whoami.exit_code == 0, whoami.stderr
    assert "alice@example.com" in whoami.stdout
    assert asgi_live_server in whoami.stdout


def test_login_prompts_for_url_and_hidden_token(asgi_live_server, alice, tmp_path):
    _, plaintext = make_token(alice)
    config = tmp_path / "config.json"

    ran = lattice(
        "login", url=None, token=None, config=config, stdin=f"{asgi_live_server}\n{plaintext}\n"
    )

    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout == ""  # prompts and notes on stderr
    assert "Server URL: " in ran.stderr
    assert plaintext not in ran.stderr  # the paste is not echoed
    assert json.loads(config.read_text())["token"] == plaintext


def test_login_refuses_a_wrong_token_and_saves_nothing(asgi_live_server, alice, tmp_path):
    config = tmp_path / "config.json"

    ran = lattice_process(
        "login",
        "--url",
        asgi_live_server,
        "--token-stdin",
        url=None,
        token=None,
        config=config,
        stdin="lat_notarealtoken\n",
    )

    assert ran.exit_code == 3
    assert len(ran.error_lines) == 1
    assert ran.error_lines[0].startswith("error: ")
    assert not config.exists()


def test_logout_forgets_the_token(asgi_live_server, alice, tmp_path):
    _, plaintext = make_token(alice)
    config = tmp_path / "config.json"
    lattice(
        "login",
        "--url",
        asgi_live_server,
        "--token-stdin",
        url=None,
        token=None,
        config=config,
        stdin=plaintext,
    )

    assert lattice("logout", url=None, token=None, config=config).exit_code == 0

    assert json.loads(config.read_text()) == {"url": asgi_live_server}
    whoami = lattice("whoami", url=None, token=None, config=config)
    assert whoami.exit_code == 3
    assert whoami.stderr.startswith("error: No token")
