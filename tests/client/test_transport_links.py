"""The transport sends the token only to its own server: a list's `next` link naming another
host is fetched on the client's server (or not at all), a direct-upload URL counts as
Lattice's only on the same origin, and a redirect is one clear line naming where the server
points, never followed (REVIEW18 R5, R7)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

from lattice.http import Transport
from tests.client.cli_helpers import lattice as run_cli
from tests.client.recorder import SAVED_TOKEN, recorders

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["recorders"]  # the fixture


def test_a_page_link_to_another_host_gets_no_token(recorders: Any) -> None:
    elsewhere = recorders(lambda _r: {"results": [], "next": None})
    server = recorders(lambda _r: {"results": [{"slug": "acme"}], "next": f"{elsewhere.url}/x"})
    transport = Transport(server.url, SAVED_TOKEN)
    try:
        list(transport.paginated("/teams/"))
    except Exception:  # noqa: S110 (refusing to follow is a fine answer too)
        pass
    finally:
        transport.close()

    assert server.seen  # the first page went to the server, with the token
    assert all(SAVED_TOKEN not in (auth or "") for _path, auth in elsewhere.seen), elsewhere.seen


@pytest.mark.parametrize(
    ("url", "ours"),
    [
        ("https://lattice.example.com/api/v1/uploads/1/", True),
        ("https://lattice.example.com:443/x", True),
        ("https://lattice.example.com.evil.io/x", False),
        ("https://lattice.example.com@evil.io/x", False),
        ("http://lattice.example.com/x", False),
        ("https://lattice.example.com:8443/x", False),
    ],
)
def test_only_the_same_origin_counts_as_the_server(url: str, *, ours: bool) -> None:
    transport = Transport("https://lattice.example.com", SAVED_TOKEN)
    try:
        assert transport.owns(url) is ours
    finally:
        transport.close()


class _Redirecting(BaseHTTPRequestHandler):
    """A server at http:// that sends everything to https:// (as most do)."""

    def do_GET(self) -> None:
        self.send_response(301)
        self.send_header("Location", f"https://lattice.example.com{self.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        return


@pytest.fixture
def redirecting() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_redirect_is_one_clear_line_naming_where_to(tmp_path: Path, redirecting: str) -> None:
    ran = run_cli(
        "datasets", "list", url=redirecting, token=SAVED_TOKEN, team="acme", config=tmp_path / "c"
    )

    assert ran.exit_code != 0
    assert len(ran.error_lines) == 1, ran.stderr
    assert "Error" not in ran.stderr  # no Python exception's name: a bug's line
    assert "https://lattice.example.com" in ran.stderr
