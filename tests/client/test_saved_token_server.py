"""The token `lattice login` saved goes only to the server it was saved for: a URL from
--url or LATTICE_URL naming another server does not get it (REVIEW18 R1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import lattice
from lattice import config
from lattice.errors import AuthenticationFailed
from tests.client.cli_helpers import lattice as run_cli
from tests.client.recorder import SAVED_TOKEN, recorders

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["recorders"]  # the fixture


ME = {"id": 1, "email": "x@example.com", "name": "", "teams": []}


def test_the_saved_token_is_never_sent_to_another_server(tmp_path: Path, recorders: Any) -> None:
    other = recorders(lambda _r: ME)
    path = tmp_path / "config.json"
    # `lattice login` saved a token for the team's real server...
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LATTICE_CONFIG", str(path))
        config.save_file(
            config.Settings(url="https://lattice.example.com", token=SAVED_TOKEN, team="acme")
        )

    # ...and later the shell points LATTICE_URL (or --url) at another one (a staging server,
    # a URL pasted from a README, a typo-squatted host).
    run_cli("whoami", url=other.url, token=None, config=path)
    run_cli("--url", other.url, "whoami", url=None, token=None, config=path)

    # Refusing to run without a token for that server (nothing sent) is a fine answer too.
    sent = [auth for _path, auth in other.seen]
    assert all(SAVED_TOKEN not in (auth or "") for auth in sent), sent


def test_the_saved_token_still_goes_to_its_own_server_and_another_says_which(
    tmp_path: Path, recorders: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = recorders(lambda _r: ME)
    monkeypatch.setenv("LATTICE_CONFIG", str(tmp_path / "config.json"))
    for name in ("LATTICE_URL", "LATTICE_TOKEN", "LATTICE_TEAM"):
        monkeypatch.delenv(name, raising=False)
    config.save_file(config.Settings(url=own.url + "/", token=SAVED_TOKEN, team="acme"))

    with lattice.Client(url=own.url) as client:  # the same server, written differently
        client.whoami()
    with pytest.raises(AuthenticationFailed) as refused:
        lattice.Client(url="https://other.example.com")

    assert own.seen == [("/api/v1/me", f"Bearer {SAVED_TOKEN}")]
    assert "No token for https://other.example.com" in refused.value.message
    assert "lattice login --url https://other.example.com" in refused.value.message
