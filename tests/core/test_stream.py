"""The live stream of a notebook: backlog, then live messages, no gap and no duplicate.

Each test runs the consumer in one event loop (as Daphne would) with the
in-memory channel layer; publishers call stream_publish like the agent and
the control worker do. The Redis buffer is tested the same way against a
real Redis.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from apps.core import stream
from apps.core.stream import stream_after, stream_last, stream_publish
from config.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(websocket_urlpatterns)


@pytest.fixture(autouse=True)
def _fresh_stream():
    stream.reset_for_tests()
    yield
    stream.reset_for_tests()


def path(notebook: Any, after: int | None = None) -> str:
    query = f"?after={after}" if after is not None else ""
    return f"/ws/teams/{notebook.team.slug}/notebooks/{notebook.pk}/{query}"


async def receive_all(communicator: WebsocketCommunicator, timeout: float = 0.5) -> list[dict]:
    """Every message until none arrives for ``timeout`` seconds."""
    out = []
    # receive_nothing, unlike a receive that times out, leaves the consumer running.
    while not await communicator.receive_nothing(timeout=timeout):
        out.extend(flat(await communicator.receive_json_from()))
    return out


def flat(received: Any) -> list[dict]:
    """The messages of one websocket message: live ones may come as a JSON array of them."""
    return received if isinstance(received, list) else [received]


def log_numbers(messages: list[dict]) -> list[int]:
    return [int(line) for m in messages if m.get("type") == "logs" for line in m["lines"]]


def publish_lines(notebook: Any, first: int, count: int, per_frame: int = 10) -> None:
    for start in range(first, first + count, per_frame):
        lines = [str(n) for n in range(start, min(start + per_frame, first + count))]
        stream_publish(notebook.stream, {"type": "logs", "lines": lines})


def test_a_late_viewer_gets_the_backlog_then_live_lines(alice, notebook):
    publish_lines(notebook, 0, 100)

    async def run():
        communicator = WebsocketCommunicator(application, path(notebook))
        communicator.scope["user"] = alice
        assert (await communicator.connect())[0]
        hello = await communicator.receive_json_from()
        backlog = await receive_all(communicator)
        await sync_to_async(publish_lines)(notebook, 100, 50)
        live = await receive_all(communicator)
        await communicator.disconnect()
        return hello, backlog, live

    hello, backlog, live = async_to_sync(run)()

    assert hello["type"] == "hello"
    assert hello["last"] == 10
    assert log_numbers(backlog) == list(range(100))
    assert log_numbers(live) == list(range(100, 150))
    seqs = [m["seq"] for m in backlog + live]
    assert seqs == list(range(1, 16))


def test_a_reconnect_mid_stream_loses_nothing_and_repeats_nothing(alice, notebook):
    publish_lines(notebook, 0, 50)

    async def run():
        first = WebsocketCommunicator(application, path(notebook))
        first.scope["user"] = alice
        assert (await first.connect())[0]
        await first.receive_json_from()  # hello
        seen = await receive_all(first)
        await first.disconnect()
        # While disconnected, more output arrives.
        await sync_to_async(publish_lines)(notebook, 50, 70)
        second = WebsocketCommunicator(application, path(notebook, after=seen[-1]["seq"]))
        second.scope["user"] = alice
        assert (await second.connect())[0]
        await second.receive_json_from()  # hello
        caught_up = await receive_all(second)
        await sync_to_async(publish_lines)(notebook, 120, 30)
        live = await receive_all(second)
        await second.disconnect()
        return seen, caught_up, live

    seen, caught_up, live = async_to_sync(run)()

    assert log_numbers(seen + caught_up + live) == list(range(150))


def test_a_message_the_channel_layer_dropped_is_filled_from_the_buffer(alice, notebook):
    async def run():
        communicator = WebsocketCommunicator(application, path(notebook))
        communicator.scope["user"] = alice
        assert (await communicator.connect())[0]
        await communicator.receive_json_from()  # hello

        def publish_with_one_lost() -> None:
            stream_publish(notebook.stream, {"type": "logs", "lines": ["0"]})
            # Numbered and buffered, but never fanned out (a full channel drops it).
            buffer = stream._the_buffer()
            buffer.append(notebook.stream, '{"type":"logs","lines":["1"]}', 100)
            stream_publish(notebook.stream, {"type": "logs", "lines": ["2"]})

        await sync_to_async(publish_with_one_lost)()
        got = await receive_all(communicator)
        await communicator.disconnect()
        return got

    got = async_to_sync(run)()

    assert log_numbers(got) == [0, 1, 2]
    assert [m["seq"] for m in got] == [1, 2, 3]


def test_a_viewer_further_behind_than_the_backlog_is_told_of_the_gap(alice, notebook, settings):
    settings.LATTICE_STREAM_BACKLOG = 5
    publish_lines(notebook, 0, 100)  # 10 frames, only the last 5 kept

    async def run():
        communicator = WebsocketCommunicator(application, path(notebook, after=2))
        communicator.scope["user"] = alice
        assert (await communicator.connect())[0]
        await communicator.receive_json_from()
        got = await receive_all(communicator)
        await communicator.disconnect()
        return got

    got = async_to_sync(run)()

    assert got[0] == {"type": "gap", "from": 3, "to": 5}
    assert [m["seq"] for m in got[1:]] == [6, 7, 8, 9, 10]


def test_an_outsider_or_a_visitor_is_refused(charlie, globex, notebook):
    from django.contrib.auth.models import AnonymousUser

    async def run(user):
        communicator = WebsocketCommunicator(application, path(notebook))
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert async_to_sync(run)(charlie) is False
    assert async_to_sync(run)(AnonymousUser()) is False


def _buffer_keys(notebook: Any) -> list[str]:
    return [
        f"lattice:stream:{notebook.stream}:{part}" for part in ("seq", "buf", "frames", "epoch")
    ]


def _on_redis(settings: Any, redis_url: str, notebook: Any) -> Any:
    """Redis pub/sub and a Redis buffer, as in production, with the notebook's buffer emptied
    (numbers restart with each test database); the Redis client, to empty it again."""
    import redis

    settings.REDIS_URL = redis_url
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [redis_url], "prefix": f"test-{uuid.uuid4().hex[:8]}"},
        },
    }
    stream.reset_for_tests()
    client = redis.Redis.from_url(redis_url)
    client.delete(*_buffer_keys(notebook))
    return client


def test_through_redis_a_publisher_thread_reaches_a_viewer_with_nothing_lost(
    alice, notebook, settings, redis_url
):
    # As in production: the agent publishes from its own thread and loop, the
    # web process's consumer receives through Redis pub/sub, the buffer is Redis.
    import threading

    client = _on_redis(settings, redis_url, notebook)

    async def run():
        communicator = WebsocketCommunicator(application, path(notebook))
        communicator.scope["user"] = alice
        assert (await communicator.connect())[0]
        await communicator.receive_json_from()  # hello
        agent = threading.Thread(target=publish_lines, args=(notebook, 0, 2000, 100))
        agent.start()
        got: list[dict] = []
        while len(log_numbers(got)) < 2000:
            got.extend(flat(await communicator.receive_json_from(timeout=5)))
        agent.join()
        await communicator.disconnect()
        return got

    try:
        got = async_to_sync(run)()
    finally:
        client.delete(*_buffer_keys(notebook))
        stream.reset_for_tests()

    assert log_numbers(got) == list(range(2000))
    assert [m["seq"] for m in got] == list(range(1, 21))


def test_the_redis_buffer_numbers_atomically_and_pages_after_a_number(redis_url, settings):
    import redis

    settings.REDIS_URL = redis_url
    buffer = stream._RedisBuffer(redis_url)
    name = "test-redis-buffer"
    client = redis.Redis.from_url(redis_url)
    client.delete(f"lattice:stream:{name}:seq", f"lattice:stream:{name}:buf")

    numbers = [buffer.append(name, f'{{"n":{i}}}', 5) for i in range(8)]

    assert numbers == list(range(1, 9))
    assert buffer.last(name) == 8
    assert [n for n, _ in buffer.after(name, 0, 100)] == [4, 5, 6, 7, 8]  # trimmed to 5
    assert [n for n, _ in buffer.after(name, 6, 100)] == [7, 8]
    assert [n for n, _ in buffer.after(name, 4, 2)] == [5, 6]
    client.delete(f"lattice:stream:{name}:seq", f"lattice:stream:{name}:buf")


def test_stream_helpers_on_the_embedded_default(notebook):
    assert stream_last(notebook.stream) == 0
    stream_publish(notebook.stream, {"type": "status", "status": "queued"})
    assert stream_last(notebook.stream) == 1
    assert stream_after(notebook.stream, 0) == [{"seq": 1, "type": "status", "status": "queued"}]


@pytest.fixture(params=["memory", "redis"])
def channel_layer(request, settings, notebook):
    """The embedded default (in-memory), or Redis pub/sub and a Redis buffer as in production
    (the notebook's buffer emptied first: numbers restart with each test database)."""
    if request.param == "memory":
        yield request.param
        return
    client = _on_redis(settings, request.getfixturevalue("redis_url"), notebook)
    yield request.param
    client.delete(*_buffer_keys(notebook))
    client.close()


async def viewer(user: Any, notebook: Any) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path(notebook))
    communicator.scope["user"] = user
    assert (await communicator.connect())[0]
    assert (await communicator.receive_json_from())["type"] == "hello"
    return communicator


def test_a_removed_member_is_cut_off_within_a_second_without_sending_anything(
    acme, alice, bob, notebook, channel_layer
):
    import time

    from apps.teams.models import Membership
    from apps.teams.services import member_remove

    def remove_bob() -> None:
        member = Membership.objects.for_team(acme).get(user=bob)
        member_remove(team=acme, actor=alice, member=member)

    async def run():
        watching = await viewer(bob, notebook)
        staying = await viewer(alice, notebook)
        removed_at = time.monotonic()
        await sync_to_async(remove_bob)()
        closed = await watching.receive_output(timeout=1)
        waited = time.monotonic() - removed_at
        # What is published afterwards reaches alice, and nothing more reaches bob.
        await sync_to_async(publish_lines)(notebook, 0, 1)
        to_alice = await staying.receive_json_from(timeout=2)
        bob_got_more = not await watching.receive_nothing(timeout=0.3)
        await watching.disconnect()
        await staying.disconnect()
        return closed, waited, to_alice, bob_got_more

    try:
        closed, waited, to_alice, bob_got_more = async_to_sync(run)()
    finally:
        stream.reset_for_tests()

    assert closed == {"type": "websocket.close", "code": 4404}
    assert waited < 1.0
    assert log_numbers([to_alice]) == [0]
    assert not bob_got_more


def test_another_members_removal_leaves_a_viewer_connected(
    acme, alice, bob, charlie, notebook, channel_layer
):
    from apps.teams.models import Membership, Role
    from apps.teams.services import member_change_role, member_remove
    from tests.factories import add_member

    add_member(acme, charlie, Role.VIEWER)

    def change_the_others() -> None:
        member_change_role(
            team=acme,
            actor=alice,
            member=Membership.objects.for_team(acme).get(user=charlie),
            role=Role.MEMBER,
        )
        charlies = Membership.objects.for_team(acme).get(user=charlie)
        member_remove(team=acme, actor=alice, member=charlies)

    async def run():
        watching = await viewer(bob, notebook)
        await sync_to_async(change_the_others)()
        quiet = await watching.receive_nothing(timeout=1)
        await sync_to_async(publish_lines)(notebook, 0, 1)
        still = await watching.receive_json_from(timeout=2)
        await watching.disconnect()
        return quiet, still

    try:
        quiet, still = async_to_sync(run)()
    finally:
        stream.reset_for_tests()

    assert quiet
    assert log_numbers([still]) == [0]


def test_through_the_asgi_server_a_removed_members_socket_closes_within_a_second(
    acme, alice, bob, notebook, channel_layer, asgi_live_server
):
    # As deployed: uvicorn, the session cookie, the origin check; the removal in another thread.
    import asyncio
    import time

    import websockets
    from django.test import Client

    from apps.teams.models import Membership
    from apps.teams.services import member_remove

    client = Client()
    client.force_login(bob)
    cookie = client.cookies["sessionid"].value
    url = asgi_live_server.replace("http", "ws", 1) + path(notebook)

    def remove_bob() -> None:
        member_remove(
            team=acme, actor=alice, member=Membership.objects.for_team(acme).get(user=bob)
        )

    async def watch() -> tuple[int | None, float]:
        async with websockets.connect(
            url,
            additional_headers={"Cookie": f"sessionid={cookie}"},
            origin=websockets.typing.Origin(asgi_live_server),
            open_timeout=20,
        ) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            await sync_to_async(remove_bob)()
            removed_at = time.monotonic()
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 1)
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                return code, time.monotonic() - removed_at

    code, waited = async_to_sync(watch)()

    assert code == 4404
    assert waited < 1.0


def test_log_frames_go_out_in_their_shippers_order_whatever_order_they_arrive(notebook):
    # The control worker handles agents' frames several at once: frame 2 may be handled
    # before frame 1. It waits for frame 1; a replayed frame 1 is dropped; so is one that
    # comes after a later frame of its shipper went out.
    import threading

    from apps.core.stream import stream_publish_frame

    def frame(n: int, source: str = "shipper-a") -> None:
        stream_publish_frame(
            notebook.stream, {"type": "logs", "lines": [str(n)]}, source=source, frame=n
        )

    second = threading.Thread(target=frame, args=(2,))
    second.start()
    time.sleep(0.2)  # frame 2 is waiting for frame 1
    assert stream_last(notebook.stream) == 0
    frame(1)
    second.join()
    frame(1)  # a replay
    frame(1, source="shipper-b")  # another shipper (an agent restarted) numbers its own

    assert log_numbers(stream_after(notebook.stream, 0)) == [1, 2, 1]


def test_a_lost_frame_holds_the_next_one_back_only_a_moment(notebook, monkeypatch):
    from apps.core.stream import stream_publish_frame

    monkeypatch.setattr(stream, "FRAME_WAIT", 0.3)
    began = time.monotonic()
    stream_publish_frame(notebook.stream, {"type": "logs", "lines": ["3"]}, source="s", frame=3)
    waited = time.monotonic() - began
    stream_publish_frame(notebook.stream, {"type": "logs", "lines": ["2"]}, source="s", frame=2)

    assert 0.3 <= waited < 2
    assert log_numbers(stream_after(notebook.stream, 0)) == [3]


def test_the_redis_buffer_orders_frames_atomically(redis_url, settings):
    import redis

    settings.REDIS_URL = redis_url
    buffer = stream._RedisBuffer(redis_url)
    name = f"test-frames-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)

    try:
        early = buffer.append_frame(name, '{"n":2}', 10, "s", 2, force=False)
        first = buffer.append_frame(name, '{"n":1}', 10, "s", 1, force=False)
        second = buffer.append_frame(name, '{"n":2}', 10, "s", 2, force=False)
        replay = buffer.append_frame(name, '{"n":1}', 10, "s", 1, force=False)
        skipped = buffer.append_frame(name, '{"n":5}', 10, "s", 5, force=True)
        late = buffer.append_frame(name, '{"n":4}', 10, "s", 4, force=False)
    finally:
        keys = client.keys(f"lattice:stream:{name}:*")
        assert len(keys) == 4  # seq, buf, frames, epoch
        client.delete(*keys)

    assert (early, first, second, replay, skipped, late) == (-1, 1, 2, 0, 3, 0)


def _lose_the_buffer(channel_layer: str, notebook: Any) -> None:
    """What a restart does to a buffer: gone (memory), or emptied (Redis lost its data)."""
    if channel_layer == "redis":
        import redis
        from django.conf import settings

        client = redis.Redis.from_url(settings.REDIS_URL)
        client.delete(*_buffer_keys(notebook))
        client.close()
    stream.reset_for_tests()


def test_a_client_of_a_lost_buffer_is_told_it_restarted_even_below_the_new_last(
    alice, notebook, channel_layer
):
    # A chatty notebook: by the time the page comes back, the new stream's numbers have
    # passed the page's old one. Only the epoch says these are other numbers.
    publish_lines(notebook, 0, 50)

    async def connect(query: str) -> list[dict]:
        communicator = WebsocketCommunicator(application, path(notebook) + query)
        communicator.scope["user"] = alice
        assert (await communicator.connect())[0]
        got = await receive_all(communicator)
        await communicator.disconnect()
        return got

    before = async_to_sync(connect)("")
    old_epoch, old_last = before[0].get("epoch", ""), before[-1]["seq"]
    assert old_last == 5

    _lose_the_buffer(channel_layer, notebook)
    publish_lines(notebook, 1000, 80)  # eight frames: seq 1..8, beyond the old 5
    assert stream_last(notebook.stream) == 8

    again = async_to_sync(connect)(f"?after={old_last}&epoch={old_epoch}")
    assert again[0]["type"] == "hello"
    assert again[0]["restarted"] is True
    assert [m["seq"] for m in again[1:]] == list(range(1, 9))
    assert old_epoch
    assert again[0]["epoch"]
    assert again[0]["epoch"] != old_epoch
    assert log_numbers(again) == list(range(1000, 1080))

    # With the buffer's own epoch, the same number resumes where it was: nothing again.
    same = async_to_sync(connect)(f"?after=5&epoch={again[0]['epoch']}")
    assert "restarted" not in same[0]
    assert [m["seq"] for m in same[1:]] == [6, 7, 8]


def test_the_epoch_is_made_with_the_buffer_and_kept_while_it_lives(notebook, channel_layer):
    first = stream.stream_resume(notebook.stream, 0)
    stream_publish(notebook.stream, {"type": "status", "status": "queued"})
    assert stream.stream_resume(notebook.stream, 0).epoch == first.epoch
    assert stream.stream_resume(notebook.stream, 1, first.epoch).restarted is False
    _lose_the_buffer(channel_layer, notebook)
    stream_publish(notebook.stream, {"type": "status", "status": "queued"})
    stream_publish(notebook.stream, {"type": "status", "status": "running"})
    resume = stream.stream_resume(notebook.stream, 1, first.epoch)
    assert resume.epoch != first.epoch
    assert (resume.after, resume.last, resume.restarted) == (0, 2, True)


def test_a_number_beyond_the_last_says_restarted_even_under_the_same_epoch(notebook, channel_layer):
    # Redis may evict the numbering alone and keep the epoch: the numbers start again
    # under it, and a client that had seen more must still start over.
    stream_publish(notebook.stream, {"type": "status", "status": "queued"})
    current = stream.stream_resume(notebook.stream, 0)

    resume = stream.stream_resume(notebook.stream, current.last + 5, current.epoch)

    assert (resume.after, resume.restarted) == (0, True)


def test_a_frame_waiting_for_one_published_by_this_process_goes_at_once(notebook, monkeypatch):
    # The control worker publishes frames on threads: frame 2, come first, waits for frame 1
    # and is woken when this process publishes it, not at its next poll (made long here).
    import threading

    from apps.core.stream import stream_publish_frame

    monkeypatch.setattr(stream, "FRAME_WAIT", 10.0)
    monkeypatch.setattr(stream, "FRAME_POLL_MAX", 3.0)
    done: list[float] = []

    def second() -> None:
        stream_publish_frame(notebook.stream, {"type": "logs", "lines": ["2"]}, source="s", frame=2)
        done.append(time.monotonic())

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(1.0)  # its pauses have grown past a second by now
    published = time.monotonic()
    stream_publish_frame(notebook.stream, {"type": "logs", "lines": ["1"]}, source="s", frame=1)
    waiter.join(10)

    assert done
    assert done[0] - published < 0.5
    assert log_numbers(stream_after(notebook.stream, 0)) == [1, 2]
