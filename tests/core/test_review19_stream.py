"""Review 19 (stream): defects found in the per-process fan-out hub (apps.core.fanout,
apps.teams.consumers), R1-R5, each a regular test now that it is fixed."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from apps.core import fanout, stream
from apps.core.stream import stream_publish
from apps.teams.consumers import CLOSE_NOT_A_MEMBER, stream_watch
from tests.core.test_stream import application, flat, path, viewer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _fresh_stream():
    stream.reset_for_tests()
    yield
    stream.reset_for_tests()


@pytest.mark.parametrize("text", ["{not json", '{"type": "backlog", "from": Infinity}'])
def test_a_crafted_client_message_leaves_nothing_in_the_hub(alice, notebook, text):
    async def run() -> tuple[dict[str, int], int]:
        communicator = await viewer(alice, notebook)
        await communicator.send_to(text_data=text)
        with contextlib.suppress(BaseException):
            await communicator.receive_output(timeout=1)  # the app raised: socket gone
        await asyncio.sleep(0.1)
        feeds = {name: len(feed.viewers) for name, feed in fanout.hub().feeds.items()}
        watched = len(stream_watch().consumers)
        # Clean up what the bug left, so the loop can end.
        for feed in list(fanout.hub().feeds.values()):
            for leaked in list(feed.viewers):
                await fanout.hub().unregister(leaked)
        for consumer in list(stream_watch().consumers):
            stream_watch().discard(consumer)
        return feeds, watched

    feeds, watched = async_to_sync(run)()

    assert feeds == {}  # the socket is gone: its stream has no viewer left
    assert watched == 0


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        '{"type": "backlog", "from": Infinity}',
        '{"type": "backlog", "from": 1e400}',
        '{"type": "backlog", "from": 1, "to": 99999999999999999999}',
        "[" * 100000,
    ],
)
def test_a_crafted_client_message_is_ignored_and_the_socket_lives_on(alice, notebook, text):
    async def run() -> dict:
        communicator = await viewer(alice, notebook)
        while not await communicator.receive_nothing(timeout=0.2):
            await communicator.receive_from()
        await communicator.send_to(text_data=text)
        await communicator.send_to(bytes_data=b"\x00binary")
        await communicator.send_json_to({"type": "ping"})
        reply = await communicator.receive_json_from(timeout=2)
        await communicator.disconnect()
        return reply

    assert async_to_sync(run)() == {"type": "pong"}


def test_the_sweep_closes_a_viewer_whose_session_ended(alice, notebook):
    from importlib import import_module

    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(alice)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    engine = import_module(settings.SESSION_ENGINE)

    async def run() -> tuple[Any, list[dict]]:
        communicator = WebsocketCommunicator(application, path(notebook))
        communicator.scope["user"] = alice
        communicator.scope["session"] = engine.SessionStore(session_key=key)
        assert (await communicator.connect())[0]
        assert (await communicator.receive_json_from())["type"] == "hello"
        while not await communicator.receive_nothing(timeout=0.2):
            await communicator.receive_from()
        # Signed out behind the receivers' back (the access signal lost): the session is gone.
        await sync_to_async(lambda: engine.SessionStore(session_key=key).delete())()
        await stream_watch().sweep()
        await sync_to_async(stream_publish)(notebook.stream, {"type": "logs", "lines": ["s"]})
        first = await communicator.receive_output(timeout=1)
        got: list[dict] = []
        if first.get("type") == "websocket.send":
            import json

            got = flat(json.loads(first["text"]))
        await communicator.disconnect()
        return first, got

    first, got = async_to_sync(run)()

    assert first == {"type": "websocket.close", "code": CLOSE_NOT_A_MEMBER}, got


def test_the_sweep_checks_every_session_in_one_batch(alice, notebook, monkeypatch):
    """Several live sessions: the sweep reads them all at once, no per-viewer check."""
    from importlib import import_module

    from django.conf import settings
    from django.test import Client

    from apps.teams import consumers

    engine = import_module(settings.SESSION_ENGINE)
    keys = []
    for _ in range(3):
        client = Client()
        client.force_login(alice)
        keys.append(client.cookies[settings.SESSION_COOKIE_NAME].value)
    batches: list[set] = []
    single: list[str] = []
    real_batch, real_single = consumers.sessions_signing_in, consumers.session_signs_in

    def batch(pairs: set) -> set[str]:
        batches.append(pairs)
        return real_batch(pairs)

    def one(key: str | None, uid: int, **kw: Any) -> bool:
        single.append(str(key))
        return real_single(key, uid, **kw)

    monkeypatch.setattr(consumers, "sessions_signing_in", batch)
    monkeypatch.setattr(consumers, "session_signs_in", one)

    async def run() -> list[bool]:
        sockets = []
        for key in keys:
            communicator = WebsocketCommunicator(application, path(notebook))
            communicator.scope["user"] = alice
            communicator.scope["session"] = engine.SessionStore(session_key=key)
            assert (await communicator.connect())[0]
            sockets.append(communicator)
        for communicator in sockets:
            while not await communicator.receive_nothing(timeout=0.2):
                await communicator.receive_from()
        single.clear()
        await stream_watch().sweep()
        quiet = [await c.receive_nothing(timeout=0.3) for c in sockets]
        for communicator in sockets:
            await communicator.disconnect()
        return quiet

    quiet = async_to_sync(run)()

    assert quiet == [True, True, True]  # all still signed in: none closed
    assert batches == [{(key, alice.pk) for key in keys}]
    assert single == []


def test_a_new_viewer_of_an_old_feed_gets_live_messages(alice, notebook, monkeypatch):
    layer = get_channel_layer()
    monkeypatch.setattr(layer, "group_expiry", 1)  # a day, shortened

    async def run() -> list[dict]:
        old = await viewer(alice, notebook)
        await asyncio.sleep(1.5)
        new = await viewer(alice, notebook)
        while not await new.receive_nothing(timeout=0.2):
            await new.receive_from()
        await sync_to_async(stream_publish)(notebook.stream, {"type": "logs", "lines": ["n"]})
        got: list[dict] = []
        while not await new.receive_nothing(timeout=0.5):
            got.extend(flat(await new.receive_json_from()))
        await new.disconnect()
        await old.disconnect()
        return got

    got = async_to_sync(run)()

    assert [m.get("lines") for m in got] == [["n"]]


def test_a_long_hole_is_filled_or_announced(alice, notebook, settings):
    settings.LATTICE_STREAM_BACKLOG = 5000
    dropped = 2500

    def drop_then_publish() -> None:
        for n in range(dropped):
            # Numbered and kept, never sent to the group: as if the layer had dropped them.
            stream._the_buffer().append(notebook.stream, f'{{"type":"logs","lines":["{n}"]}}', 5000)
        stream_publish(notebook.stream, {"type": "logs", "lines": ["last"]})

    async def run() -> tuple[int, list[dict]]:
        communicator = await viewer(alice, notebook)
        start = stream.stream_last(notebook.stream)
        await sync_to_async(drop_then_publish)()
        got: list[dict] = []
        while not await communicator.receive_nothing(timeout=1):
            got.extend(flat(await communicator.receive_json_from()))
        await communicator.disconnect()
        return start, got

    start, got = async_to_sync(run)()

    seqs = [m["seq"] for m in got if "seq" in m]
    told = [m for m in got if m.get("type") in ("skipped", "gap")]
    assert seqs == list(range(start + 1, start + dropped + 2)) or told, (len(seqs), seqs[-3:])


def test_a_connected_viewer_gets_messages_after_the_stream_started_over(alice, notebook):
    for n in range(5):
        stream_publish(notebook.stream, {"type": "logs", "lines": [f"old{n}"]})

    async def run() -> list[dict]:
        communicator = await viewer(alice, notebook)
        while not await communicator.receive_nothing(timeout=0.3):
            await communicator.receive_from()
        # What a restart of the buffer's store does (apps.core.stream's own reset).
        await sync_to_async(stream.reset_for_tests)()
        # The reset forgets the server loop too, which a real restart of the buffer's
        # store (Redis) does not: without it the in-memory layer would deliver nothing.
        stream.register_server_loop(asyncio.get_running_loop())
        await sync_to_async(stream_publish)(notebook.stream, {"type": "logs", "lines": ["new"]})
        got: list[dict] = []
        while not await communicator.receive_nothing(timeout=0.5):
            got.extend(flat(await communicator.receive_json_from()))
        await communicator.disconnect()
        return got

    got = async_to_sync(run)()

    assert ["new"] in [m.get("lines") for m in got], got
