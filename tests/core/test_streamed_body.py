"""Upload chunks streamed to their view (apps/core/streamed_body.py), and the same route end to
end under uvicorn: the chunk is stored, checked and refused as through Django's own body."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from apps.accounts.models import TOKEN_SCOPES
from apps.accounts.tokens import token_create
from apps.core import streamed_body
from apps.core.streamed_body import PIECE, StreamedBody, streamed
from apps.core.tenancy import team_scope
from apps.datasets.models import UploadChunk
from apps.datasets.services import dataset_create
from tests.dataset_fixtures import sha

if TYPE_CHECKING:
    from pathlib import Path

KIB = 1024


def scripted(messages: list[dict[str, Any]]) -> tuple[Any, list[int]]:
    """An ASGI receive that answers ``messages`` in order, then waits for ever; and the
    count of calls so far (a list of one)."""
    calls = [0]

    async def receive() -> dict[str, Any]:
        calls[0] += 1
        if calls[0] <= len(messages):
            return messages[calls[0] - 1]
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    return receive, calls


def body_messages(data: bytes, size: int) -> list[dict[str, Any]]:
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    return [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]


async def read_in_thread(body: StreamedBody) -> list[bytes]:
    """Iterate ``body`` on a thread of its own, as a sync view does."""
    return await asyncio.to_thread(list, body)


def test_the_body_reaches_the_view_whole_in_order_and_uncopied() -> None:
    data = bytes(range(256)) * (10 * KIB)  # 2.5 MiB, sent as 64 KiB messages
    messages = body_messages(data, 64 * KIB)
    receive, _ = scripted(messages)

    async def run() -> list[bytes]:
        body = StreamedBody(receive)
        pump = asyncio.create_task(body.pump())
        pieces = await read_in_thread(body)
        await pump
        return pieces

    pieces = asyncio.run(run())
    assert b"".join(pieces) == data
    # The server's own bytes objects: not joined, not copied on the way.
    assert all(p is m["body"] for p, m in zip(pieces, messages, strict=True))


def test_a_body_nobody_reads_is_read_no_further_than_the_queue_holds() -> None:
    """Memory stays bounded whatever the size: with the view not reading, the pump stops
    once DEPTH batches wait (plus the one it is putting)."""
    endless = [{"type": "http.request", "body": b"x" * PIECE, "more_body": True}] * 1000
    receive, calls = scripted(endless)

    async def run() -> int:
        body = StreamedBody(receive)
        pump = asyncio.create_task(body.pump())
        for _ in range(200):
            await asyncio.sleep(0)
        pump.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pump
        return calls[0]

    assert asyncio.run(run()) == streamed_body.DEPTH + 1


def test_a_client_that_goes_away_ends_the_body_short_and_the_app_hears_of_it() -> None:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b"a" * (300 * KIB), "more_body": True},
        {"type": "http.disconnect"},
    ]
    receive, _ = scripted(messages)

    async def run() -> tuple[list[bytes], dict[str, Any], dict[str, Any], bool]:
        body = StreamedBody(receive)
        pump = asyncio.create_task(body.pump())
        first = await body.receive_for_app()
        pieces = await read_in_thread(body)
        second = await body.receive_for_app()
        await pump
        return pieces, first, second, body.disconnected

    pieces, first, second, disconnected = asyncio.run(run())
    # The view gets what arrived, then the end: shorter than it declared, so refused there
    # (a chunk's size check); the app hears of the disconnect.
    assert b"".join(pieces) == b"a" * (300 * KIB)
    assert disconnected
    assert first == {"type": "http.request", "body": b"", "more_body": False}
    assert second == {"type": "http.disconnect"}


def test_the_wrapped_app_gets_an_empty_body_and_the_stream_in_its_scope() -> None:
    data = b"chunk" * (100 * KIB)
    receive, _ = scripted(body_messages(data, 16 * KIB))
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["first"] = await receive()
        seen["body"] = b"".join(await read_in_thread(scope[streamed_body.SCOPE_KEY]))
        seen["thread"] = threading.current_thread().name

    async def serve() -> None:
        async def send(message: dict[str, Any]) -> None:
            raise AssertionError(message)

        await streamed(app)({"type": "http", "method": "PUT"}, receive, send)

    asyncio.run(serve())
    assert seen["first"] == {"type": "http.request", "body": b"", "more_body": False}
    assert seen["body"] == data


# --- the chunk route under uvicorn, as deployed -----------------------------------------------

CHUNK = 256 * KIB


@pytest.fixture
def http(asgi_live_server: str, acme: Any, alice: Any, media: Path) -> httpx.Client:
    with team_scope(acme):
        dataset_create(team=acme, actor=alice, name="Big")
    _, token = token_create(user=alice, name="cli", scopes=list(TOKEN_SCOPES), expires_in_days=None)
    return httpx.Client(
        base_url=f"{asgi_live_server}/api/v1/teams/{acme.slug}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def start(http: httpx.Client, data: bytes) -> dict[str, Any]:
    manifest = [{"path": "big.bin", "size": len(data), "sha256": sha(data)}]
    answer = http.post("/datasets/big/uploads/", json={"message": "", "files": manifest})
    assert answer.status_code == 201, answer.text
    return answer.json()


def chunk_url(upload: dict[str, Any], data: bytes, index: int) -> str:
    return f"/uploads/{upload['id']}/blobs/{sha(data)}/chunks/{index}/"


def held(upload: dict[str, Any]) -> set[int]:
    return set(
        UploadChunk.objects.unscoped()
        .filter(blob__upload_id=upload["id"])
        .values_list("index", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_chunks_put_to_the_asgi_server_make_a_version(http: httpx.Client, media: Path) -> None:
    data = bytes(range(256)) * (3 * CHUNK // 256 + 100)  # three chunks and a bit
    upload = start(http, data)
    assert upload["blobs"][0]["missing"] == [0, 1, 2, 3]
    for index in (3, 1, 0, 2):  # any order
        piece = data[index * CHUNK : (index + 1) * CHUNK]
        answer = http.put(
            chunk_url(upload, data, index), content=piece, headers={"X-Chunk-SHA256": sha(piece)}
        )
        assert answer.status_code == 204, answer.text
    done = http.post(f"/uploads/{upload['id']}/complete/")
    assert done.status_code == 201, done.text
    stored = [p for p in (media / "datasets" / "blobs").rglob("*") if p.is_file()]
    assert [p.read_bytes() == data for p in stored] == [True]


@pytest.mark.django_db(transaction=True)
def test_a_damaged_or_short_chunk_is_refused_with_a_message_and_not_kept(
    http: httpx.Client,
) -> None:
    data = b"q" * (2 * CHUNK)
    upload = start(http, data)
    piece = data[:CHUNK]
    damaged = http.put(
        chunk_url(upload, data, 0), content=piece, headers={"X-Chunk-SHA256": sha(b"other")}
    )
    assert damaged.status_code == 400
    assert "damaged" in damaged.json()["error"]["message"]
    short = http.put(
        chunk_url(upload, data, 1), content=piece[:100], headers={"X-Chunk-SHA256": sha(piece)}
    )
    assert short.status_code == 400
    assert "Send it again" in short.json()["error"]["message"]
    assert held(upload) == set()


@pytest.mark.django_db(transaction=True)
def test_the_streamed_route_still_refuses_outsiders_and_anonymous_people(
    http: httpx.Client, asgi_live_server: str, acme: Any, charlie: Any
) -> None:
    data = b"z" * CHUNK
    upload = start(http, data)
    _, outsiders = token_create(
        user=charlie, name="cli", scopes=list(TOKEN_SCOPES), expires_in_days=None
    )
    url = f"{asgi_live_server}/api/v1/teams/{acme.slug}{chunk_url(upload, data, 0)}"
    headers = {"X-Chunk-SHA256": sha(data)}
    # Refused before the body is read, twice on one connection: the unread body of the
    # first must not be taken for the second request.
    with httpx.Client(headers={"Authorization": f"Bearer {outsiders}"}) as outsider:
        for _ in range(2):
            refused = outsider.put(url, content=data, headers=headers)
            assert refused.status_code == 404
            assert refused.json()["error"]["code"] == "not_found"
    anonymous = httpx.put(url, content=data, headers=headers)
    assert anonymous.status_code in (401, 403)
    assert held(upload) == set()


@pytest.mark.parametrize(
    ("method", "path", "streams"),
    [
        ("PUT", "/api/v1/teams/acme/uploads/7/blobs/" + "a" * 64 + "/chunks/3/", True),
        ("GET", "/api/v1/teams/acme/uploads/7/blobs/" + "a" * 64 + "/chunks/3/", False),
        ("POST", "/api/v1/teams/acme/uploads/7/blobs/" + "a" * 64 + "/chunks/3/target/", False),
        ("PUT", "/api/v1/teams/acme/datasets/cats/", False),
        ("PUT", "/no/such/page/", False),
    ],
)
def test_only_chunk_puts_are_streamed(method: str, path: str, streams: bool) -> None:
    from config.asgi import _streams_body

    assert _streams_body({"method": method, "path": path}) is streams
