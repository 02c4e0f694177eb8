"""The per-process fan-out of live streams (apps.core.fanout): batches, slow viewers, backlog.

The slow-viewer test runs the way Lattice is deployed: uvicorn serving config.asgi, Redis
pub/sub as the channel layer and the Redis buffer, real sockets. One viewer stops reading
its socket (a raw socket with a tiny receive buffer that the test does not read); the
others must get every line, on time, while it is stuck; then it must be told what it
skipped and get that range back on asking.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings

from apps.core import fanout, stream
from apps.core.stream import stream_publish
from apps.teams.consumers import CLOSE_NOT_A_MEMBER, stream_watch
from tests.asgi_server import session_cookie
from tests.core.test_stream import _buffer_keys, _on_redis, application, flat, path, viewer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_stream():
    stream.reset_for_tests()
    yield
    stream.reset_for_tests()


@pytest.fixture
def on_redis(settings, redis_url, notebook):
    client = _on_redis(settings, redis_url, notebook)
    yield client
    client.delete(*_buffer_keys(notebook))
    client.close()


@pytest.fixture(params=["memory", "redis"])
def channel_layer(request, settings, notebook):
    """The embedded default (in-memory), or Redis pub/sub and a Redis buffer."""
    if request.param == "memory":
        yield request.param
        return
    yield request.getfixturevalue("on_redis")


def test_live_messages_due_together_go_as_one_array_in_order(alice, notebook, channel_layer):
    async def run() -> list[str]:
        communicator = WebsocketCommunicator(application, path(notebook))
        communicator.scope["user"] = alice
        assert (await communicator.connect())[0]
        assert (await communicator.receive_json_from())["type"] == "hello"

        def publish() -> None:
            for n in range(40):
                stream_publish(notebook.stream, {"type": "logs", "lines": [str(n)]})

        await sync_to_async(publish)()
        texts = []
        while not await communicator.receive_nothing(timeout=0.5):
            texts.append(await communicator.receive_from())
        await communicator.disconnect()
        return texts

    texts = async_to_sync(run)()

    decoded = [json.loads(text) for text in texts]
    arrays = [d for d in decoded if isinstance(d, list)]
    assert arrays, "40 messages published at once came one websocket message each"
    assert len(texts) < 40
    messages = [m for d in decoded for m in flat(d)]
    # The very objects a single message carries, seq included, each once, in order.
    assert [m["seq"] for m in messages] == list(range(1, 41))
    assert [m["lines"] for m in messages] == [[str(n)] for n in range(40)]
    assert all(m["type"] == "logs" for m in messages)


def test_one_feed_per_stream_whatever_the_number_of_viewers(alice, bob, acme, notebook):
    from apps.teams.models import Membership

    Membership.objects.unscoped().get_or_create(team=acme, user=bob, defaults={"role": "member"})

    async def run() -> tuple[int, int, list[list[int]]]:
        viewers = [await viewer(user, notebook) for user in (alice, alice, bob)]
        feeds = len(fanout.hub().feeds)
        subscribed = len(fanout.hub().feeds[notebook.stream].viewers)

        def publish() -> None:
            for n in range(5):
                stream_publish(notebook.stream, {"type": "logs", "lines": [str(n)]})

        await sync_to_async(publish)()
        got = []
        for communicator in viewers:
            seen: list[int] = []
            while not await communicator.receive_nothing(timeout=0.4):
                seen.extend(m["seq"] for m in flat(await communicator.receive_json_from()))
            got.append(seen)
            await communicator.disconnect()
        return feeds, subscribed, got

    feeds, subscribed, got = async_to_sync(run)()

    assert feeds == 1
    assert subscribed == 3
    assert got == [[1, 2, 3, 4, 5]] * 3


def test_the_process_wide_membership_check_closes_a_viewer_whose_signal_was_lost(
    acme, alice, bob, notebook, channel_layer
):
    from apps.teams.models import Membership

    Membership.objects.unscoped().get_or_create(team=acme, user=bob, defaults={"role": "member"})

    async def run() -> tuple[Any, bool, dict, int]:
        watching = await viewer(bob, notebook)
        staying = await viewer(alice, notebook)
        # Removed behind the services' back: no access signal is sent.
        await sync_to_async(
            lambda: Membership.objects.unscoped().filter(team=acme, user=bob).delete()
        )()
        quiet = await watching.receive_nothing(timeout=0.3)
        await stream_watch().sweep()
        closed = await watching.receive_output(timeout=1)
        await sync_to_async(stream_publish)(notebook.stream, {"type": "logs", "lines": ["x"]})
        to_alice = flat(await staying.receive_json_from(timeout=2))[0]
        await watching.disconnect()
        await staying.disconnect()
        return closed, quiet, to_alice, stream_watch().sweeps

    closed, quiet, to_alice, sweeps = async_to_sync(run)()

    assert quiet  # nothing closed it before the sweep
    assert closed == {"type": "websocket.close", "code": CLOSE_NOT_A_MEMBER}
    assert to_alice["lines"] == ["x"]
    assert sweeps == 1


# --- real sockets ---------------------------------------------------------------------


def _raw_connect(base: str, ws_path: str, cookie: str) -> socket.socket:
    """A websocket opened by hand, with a tiny receive buffer, that nobody reads yet."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {ws_path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {base}\r\nCookie: {django_settings.SESSION_COOKIE_NAME}={cookie}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0], head
    return sock


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def _raw_receive(sock: socket.socket) -> str:
    """One text message (the server sends them unfragmented and unmasked)."""
    first, second = _recv_exact(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", _recv_exact(sock, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", _recv_exact(sock, 8))[0]
    payload = _recv_exact(sock, length)
    assert first & 0x0F == 1, f"opcode {first & 0x0F}"
    return payload.decode()


def _raw_send(sock: socket.socket, text: str) -> None:
    payload = text.encode()
    mask = os.urandom(4)
    header = bytes([0x81])
    if len(payload) < 126:
        header += bytes([0x80 | len(payload)])
    else:
        header += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(header + mask + masked)


def _read_until(sock: socket.socket, n: int) -> list[dict[str, Any]]:
    sock.settimeout(20)
    messages: list[dict[str, Any]] = []
    assert json.loads(_raw_receive(sock))["type"] == "hello"
    while not messages or messages[-1].get("n") != n:
        messages.extend(flat(json.loads(_raw_receive(sock))))
    return messages


def _ask_backlog(sock: socket.socket, first: int, last: int) -> dict[str, Any]:
    _raw_send(sock, json.dumps({"type": "backlog", "from": first, "to": last}))
    reply: dict[str, Any] = {}
    while reply.get("type") != "backlog":
        received = json.loads(_raw_receive(sock))
        reply = received if isinstance(received, dict) else {}
    return reply


async def _fast_viewer(
    url: str, headers: dict[str, str], count: int, ready: asyncio.Event, done: list[Any]
) -> None:
    """A viewer that reads all along: the latency of each line, the kinds of message seen."""
    import websockets.asyncio.client

    latencies: dict[int, float] = {}
    kinds: set[str] = set()
    async with websockets.asyncio.client.connect(
        url, additional_headers=headers, max_size=None
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        ready.set()
        while len(latencies) < count:
            received = json.loads(await asyncio.wait_for(ws.recv(), 30))
            now = time.time()
            for message in flat(received):
                kinds.add(message["type"])
                if message["type"] == "logs":
                    latencies[message["n"]] = now - message["t"]
    done.append((latencies, kinds, time.monotonic()))


def test_a_viewer_that_stops_reading_delays_nobody_and_is_told_what_it_skipped(
    acme, alice, notebook, on_redis, asgi_live_server, monkeypatch
):
    monkeypatch.setattr(fanout, "QUEUE_BOUND", 200)
    count = 1500
    padding = "x" * 4000  # 6 MB in all: far more than the stuck socket's buffers hold
    base = asgi_live_server
    ws_path = path(notebook)
    cookie = session_cookie(alice)
    headers = {"Cookie": f"{django_settings.SESSION_COOKIE_NAME}={cookie}", "Origin": base}
    slow = _raw_connect(base, ws_path, cookie)

    def publish() -> float:
        for n in range(count):
            stream_publish(
                notebook.stream, {"type": "logs", "n": n, "t": time.time(), "lines": [padding]}
            )
        return time.monotonic()

    async def run() -> tuple[list[Any], float]:
        done: list[Any] = []
        readies = [asyncio.Event() for _ in range(3)]
        url = base.replace("http", "ws") + ws_path
        tasks = [asyncio.create_task(_fast_viewer(url, headers, count, r, done)) for r in readies]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 20)
        published_at = await asyncio.to_thread(publish)
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return done, published_at

    # The stuck viewer's hello is in its socket, unread, all along.
    done, published_at = asyncio.run(run())

    for latencies, kinds, finished_at in done:
        assert sorted(latencies) == list(range(count))  # 0 lost
        assert "skipped" not in kinds
        ordered = sorted(latencies.values())
        assert ordered[int(len(ordered) * 0.95)] < 2.0, "p95 latency of a reading viewer"
        assert finished_at - published_at < 5.0

    # Now the stuck viewer reads: its hello, some lines, a skipped notice, the newest lines.
    messages = _read_until(slow, count - 1)
    skipped = [m for m in messages if m["type"] == "skipped"]
    assert skipped, "a viewer that stopped reading was never switched to tail"
    seen = {m["seq"] for m in messages if m["type"] == "logs"}
    missed = {n for m in skipped for n in range(m["from"], m["to"] + 1)}
    assert not seen & missed
    assert seen | missed == set(range(1, count + 1))  # skipped ones counted, none lost
    assert [m["seq"] for m in messages if m["type"] == "logs"] == sorted(seen)

    # It asks for (the start of) what it skipped, and gets exactly that.
    first = skipped[0]["from"]
    last = min(skipped[0]["to"], first + 49)
    reply = _ask_backlog(slow, first, last)
    slow.close()
    assert "gap" not in reply
    assert [m["seq"] for m in reply["messages"]] == list(range(first, last + 1))
    assert [m["n"] for m in reply["messages"]] == list(range(first - 1, last))


def test_a_backlog_no_longer_kept_is_answered_with_a_gap(alice, notebook, settings):
    settings.LATTICE_STREAM_BACKLOG = 10
    for n in range(30):
        stream_publish(notebook.stream, {"type": "logs", "lines": [str(n)]})

    async def run() -> dict[str, Any]:
        communicator = await viewer(alice, notebook)
        while not await communicator.receive_nothing(timeout=0.3):
            await communicator.receive_from()
        await communicator.send_json_to({"type": "backlog", "from": 5, "to": 25})
        reply = await communicator.receive_json_from(timeout=2)
        await communicator.disconnect()
        return reply

    reply = async_to_sync(run)()

    assert reply["type"] == "backlog"
    assert reply["gap"] == {"from": 5, "to": 20}
    assert [m["seq"] for m in reply["messages"]] == list(range(21, 26))


def test_the_last_viewer_leaving_ends_the_feed(alice, notebook):

    async def run() -> tuple[int, int]:
        communicator = await viewer(alice, notebook)
        during = len(fanout.hub().feeds)
        await communicator.disconnect()
        await asyncio.sleep(0.05)
        return during, len(fanout.hub().feeds)

    assert async_to_sync(run)() == (1, 0)


def test_a_message_the_layer_dropped_is_filled_from_the_buffer_even_the_first(
    alice, notebook, channel_layer
):
    from django.conf import settings

    def drop_then_publish() -> None:
        # Numbered and kept, but never sent to the group: as if the layer had dropped it.
        stream._the_buffer().append(
            notebook.stream, '{"type":"logs","lines":["1"]}', settings.LATTICE_STREAM_BACKLOG
        )
        stream_publish(notebook.stream, {"type": "logs", "lines": ["2"]})

    async def run() -> list[dict[str, Any]]:
        communicator = await viewer(alice, notebook)
        await sync_to_async(drop_then_publish)()
        got: list[dict[str, Any]] = []
        while not await communicator.receive_nothing(timeout=0.4):
            got.extend(flat(await communicator.receive_json_from()))
        await communicator.disconnect()
        return got

    got = async_to_sync(run)()

    assert [(m["seq"], m["lines"]) for m in got] == [(1, ["1"]), (2, ["2"])]


def _viewer_run(stream_name: str, pushes: list[tuple[int, str]], last: int = 0) -> list[str]:
    """A hub Viewer fed ``pushes`` before its writer starts: the texts it sends."""
    sent: list[str] = []

    async def run() -> list[str]:
        async def send(text: str) -> None:
            sent.append(text)

        v = fanout.Viewer(stream_name, send, bound=10_000)
        v.last = last
        for seq, text in pushes:
            v.push(seq, text)
        v.start()
        deadline = time.monotonic() + 10
        while (v.queue or v.skipped or not sent) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        await v.stop()
        return sent

    return async_to_sync(run)()


def test_a_viewer_behind_gets_its_queue_in_bounded_batches_in_order(notebook, monkeypatch):
    monkeypatch.setattr(fanout, "SEND_BYTES", 10_000)
    line = "x" * 1000
    pushes = [
        (n, stream.numbered(n, json.dumps({"type": "logs", "lines": [f"{n} {line}"]})))
        for n in range(1, 101)
    ]

    sent = _viewer_run(notebook.stream, pushes)

    # About 100 kB queued: sent in several messages, none much past the bound, in order.
    assert len(sent) >= 10
    assert all(len(text) <= 10_000 + 1100 for text in sent)
    got = [m["seq"] for text in sent for m in flat(json.loads(text))]
    assert got == list(range(1, 101))


def test_a_hole_the_buffer_no_longer_holds_is_told_as_skipped(notebook):
    # Messages 1-10 numbered, the buffer keeps the last 3 (8, 9, 10); the viewer had none
    # and gets only 10 live: 8 and 9 come from the buffer, 1-7 as a skipped notice.
    for n in range(1, 11):
        stream._the_buffer().append(notebook.stream, json.dumps({"type": "logs", "n": n}), 3)

    sent = _viewer_run(notebook.stream, [(10, stream.numbered(10, '{"type":"logs","n":10}'))])

    got = [m for text in sent for m in flat(json.loads(text))]
    assert got[0] == {"type": "skipped", "from": 1, "to": 7}
    assert [m["seq"] for m in got[1:]] == [8, 9, 10]


def test_a_hole_longer_than_a_page_is_told_past_the_page(notebook, monkeypatch):
    monkeypatch.setattr(fanout, "_FILL_PAGE", 4)
    for n in range(1, 11):
        stream._the_buffer().append(notebook.stream, json.dumps({"type": "logs", "n": n}), 100)

    sent = _viewer_run(notebook.stream, [(10, stream.numbered(10, '{"type":"logs","n":10}'))])

    got = [m for text in sent for m in flat(json.loads(text))]
    assert [m.get("seq") for m in got[:4]] == [1, 2, 3, 4]
    assert got[4] == {"type": "skipped", "from": 5, "to": 9}
    assert got[5]["seq"] == 10
