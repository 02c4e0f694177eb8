"""``lattice login`` against a live server: the token read from stdin (never an argument,
so it stays out of the shell's history), checked with the server, saved to the config file
readable by its owner only; then ``lattice whoami`` names alice from that file alone."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.client.conftest import Lattice


def test_login_saves_the_token_for_its_owner_only_and_whoami_names_alice(
    lattice_cli: Lattice, lattice_url: str, alice_token: str
) -> None:
    config = Path(lattice_cli.env["LATTICE_CONFIG"])
    assert not config.exists()

    ran = lattice_cli("login", "--url", lattice_url, "--token-stdin", stdin=alice_token + "\n")

    assert ran.code == 0, ran
    assert alice_token not in ran.out + ran.err  # never echoed back
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    saved = json.loads(config.read_text())
    assert saved["token"] == alice_token
    assert saved["url"].rstrip("/") == lattice_url

    # Nothing in the environment now: what whoami knows, it read from the file.
    assert not {"LATTICE_URL", "LATTICE_TOKEN"} & set(lattice_cli.env)
    who = lattice_cli("whoami")

    assert who.code == 0, who
    assert "alice@example.com" in who.out, who


def test_login_with_a_wrong_token_saves_nothing(
    lattice_cli: Lattice, lattice_url: str, alice_token: str
) -> None:
    config = Path(lattice_cli.env["LATTICE_CONFIG"])
    wrong = alice_token[:-4] + ("aaaa" if not alice_token.endswith("aaaa") else "bbbb")

    ran = lattice_cli("login", "--url", lattice_url, "--token-stdin", stdin=wrong + "\n")

    assert ran.code != 0, ran
    assert "Traceback" not in ran.err, ran
    assert len(ran.err.strip().splitlines()) == 1, ran
    assert not config.exists()
