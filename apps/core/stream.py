"""Live streams (a notebook's status and logs): sequence numbers, a bounded backlog, fan-out.

``stream_publish(name, message)`` gives the message the stream's next sequence
number and appends it to a bounded recent buffer in one atomic step, then
sends it to the channel-layer group of the stream. A consumer joins the group
first, then reads the buffer after the last sequence number its client saw,
then forwards live messages, dropping those it already sent and filling any
hole (a message the channel layer dropped, or one still in flight from
another publisher) from the buffer. So a client that connects late or
reconnects gets the backlog, then live messages, with no gap and no duplicate
while the buffer still holds what it missed; past that it is told of the gap.

Each buffer has an epoch: a random id made with it (kept beside it in Redis, or in
this process's memory) and never changed while it lives. Numbers mean something
only within one epoch: a buffer lost in a restart comes back with a new epoch and
numbers that start over, so a client resumes with the epoch it saw as well as its
last number, and ``stream_resume`` tells it the stream restarted when the epoch is
not the same, however far the new stream's numbers have already gone.

The channel layer is never the only copy: the buffer is (Redis, or this
process's memory on the embedded default), and so are the durable rows
(notebook events) and the workload's own log.

Log frames come from agents through the control worker's inbox, which runs
several at once: ``stream_publish_frame`` publishes frame n of a source (one
agent's shipper) only after frame n - 1, waiting a moment for it, and drops a
frame that arrives after a later one of its source went out (a replay).

Backends follow the channel layer: Redis (channels-redis) with a Redis
buffer, or, on the embedded default, the in-memory layer with an in-process
buffer. The in-memory layer lives on the web server's event loop, so
publishers on other threads (the embedded worker, the agent) hand their sends
to that loop instead of calling it from their own.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

_PUBLISH = """
local seq = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], seq .. ' ' .. ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('SET', KEYS[3], ARGV[4], 'NX')
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
return seq
"""
_AFTER = """
local first = redis.call('LINDEX', KEYS[1], 0)
if not first then return {} end
local start = tonumber(ARGV[1]) + 1 - tonumber(string.match(first, '^(%d+)'))
if start < 0 then start = 0 end
return redis.call('LRANGE', KEYS[1], start, start + tonumber(ARGV[2]) - 1)
"""
# Frame ARGV[5] of source ARGV[4]: 0 when it or a later one already went out, -1 while
# its predecessor has not (unless ARGV[6] says publish anyway), else its number.
_PUBLISH_FRAME = """
local last = tonumber(redis.call('HGET', KEYS[3], ARGV[4]) or '0')
local frame = tonumber(ARGV[5])
if frame <= last then return 0 end
if frame > last + 1 and ARGV[6] ~= '1' then return -1 end
redis.call('HSET', KEYS[3], ARGV[4], frame)
local seq = redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], seq .. ' ' .. ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('SET', KEYS[4], ARGV[7], 'NX')
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('EXPIRE', KEYS[4], ARGV[3])
return seq
"""
# The buffer's epoch and last number, the epoch made first if the stream has none yet.
_POSITION = """
redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2])
return {redis.call('GET', KEYS[2]), redis.call('GET', KEYS[1]) or '0'}
"""
# Streams nobody writes to for this long are forgotten (seconds).
_KEEP_FOR = 7 * 24 * 3600
# How long a log frame waits for the one before it (seconds): lost, it is not coming.
FRAME_WAIT = 2.0
_OUT_OF_ORDER = -1
# The longest pause between two looks at a waiting frame's predecessor published by another
# process (one published by this process wakes it at once).
FRAME_POLL_MAX = 0.05
# Notified whenever this process publishes a frame: frames waiting for their predecessor.
_frames_out = threading.Condition()


def group_name(stream: str) -> str:
    return f"stream.{stream}"


def _new_epoch() -> str:
    return secrets.token_hex(8)


class _RedisBuffer:
    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self._publish = self.client.register_script(_PUBLISH)
        self._publish_frame = self.client.register_script(_PUBLISH_FRAME)
        self._after = self.client.register_script(_AFTER)
        self._position = self.client.register_script(_POSITION)

    def append(self, stream: str, body: str, keep: int) -> int:
        keys = [
            f"lattice:stream:{stream}:seq",
            f"lattice:stream:{stream}:buf",
            f"lattice:stream:{stream}:epoch",
        ]
        return int(self._publish(keys=keys, args=[body, keep, _KEEP_FOR, _new_epoch()]))

    def append_frame(
        self, stream: str, body: str, keep: int, source: str, frame: int, *, force: bool
    ) -> int:
        keys = [
            f"lattice:stream:{stream}:seq",
            f"lattice:stream:{stream}:buf",
            f"lattice:stream:{stream}:frames",
            f"lattice:stream:{stream}:epoch",
        ]
        args: list[str | int] = [
            body,
            keep,
            _KEEP_FOR,
            source,
            frame,
            "1" if force else "0",
            _new_epoch(),
        ]
        return int(self._publish_frame(keys=keys, args=args))

    def frame_cursor(self, stream: str, source: str) -> int:
        value = self.client.hget(f"lattice:stream:{stream}:frames", source)
        return int(value) if value else 0

    def after(self, stream: str, seq: int, limit: int) -> list[tuple[int, str]]:
        rows = self._after(keys=[f"lattice:stream:{stream}:buf"], args=[seq, limit])
        out = []
        for row in rows:
            number, _, body = row.decode().partition(" ")
            out.append((int(number), body))
        return out

    def last(self, stream: str) -> int:
        value = self.client.get(f"lattice:stream:{stream}:seq")
        return int(value) if value else 0

    def position(self, stream: str) -> tuple[str, int]:
        keys = [f"lattice:stream:{stream}:seq", f"lattice:stream:{stream}:epoch"]
        epoch, last = self._position(keys=keys, args=[_new_epoch(), _KEEP_FOR])
        return epoch.decode(), int(last)


class _MemoryBuffer:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.seq: dict[str, int] = {}
        self.buffers: dict[str, deque[tuple[int, str]]] = {}
        self.frames: dict[tuple[str, str], int] = {}
        self.epochs: dict[str, str] = {}

    def append_frame(
        self, stream: str, body: str, keep: int, source: str, frame: int, *, force: bool
    ) -> int:
        with self.lock:
            last = self.frames.get((stream, source), 0)
            if frame <= last:
                return 0
            if frame > last + 1 and not force:
                return _OUT_OF_ORDER
            self.frames[stream, source] = frame
            return self.append(stream, body, keep)

    def frame_cursor(self, stream: str, source: str) -> int:
        with self.lock:
            return self.frames.get((stream, source), 0)

    def append(self, stream: str, body: str, keep: int) -> int:
        with self.lock:
            seq = self.seq.get(stream, 0) + 1
            self.seq[stream] = seq
            self.epochs.setdefault(stream, _new_epoch())
            buffer = self.buffers.get(stream)
            if buffer is None or buffer.maxlen != keep:
                buffer = self.buffers[stream] = deque(buffer or (), maxlen=keep)
            buffer.append((seq, body))
            return seq

    def after(self, stream: str, seq: int, limit: int) -> list[tuple[int, str]]:
        with self.lock:
            return [row for row in self.buffers.get(stream, ()) if row[0] > seq][:limit]

    def last(self, stream: str) -> int:
        with self.lock:
            return self.seq.get(stream, 0)

    def position(self, stream: str) -> tuple[str, int]:
        with self.lock:
            return self.epochs.setdefault(stream, _new_epoch()), self.seq.get(stream, 0)


_buffer: _RedisBuffer | _MemoryBuffer | None = None
_buffer_lock = threading.Lock()
_server_loop: asyncio.AbstractEventLoop | None = None
_thread = threading.local()


def _the_buffer() -> _RedisBuffer | _MemoryBuffer:
    global _buffer  # noqa: PLW0603 - one buffer per process, made on first use
    with _buffer_lock:
        if _buffer is None:
            layer = get_channel_layer()
            _buffer = (
                _MemoryBuffer()
                if isinstance(layer, InMemoryChannelLayer) or not settings.REDIS_URL
                else _RedisBuffer(settings.REDIS_URL)
            )
        return _buffer


def reset_for_tests() -> None:
    """Forget the buffer and the server loop (tests swap channel layers and loops)."""
    global _buffer, _server_loop  # noqa: PLW0603
    _buffer = None
    _server_loop = None


def register_server_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Consumers call this: the loop the in-memory layer's queues belong to."""
    global _server_loop  # noqa: PLW0603
    _server_loop = loop


def stream_publish(stream: str, message: dict[str, Any]) -> int:
    """Number ``message``, keep it in the backlog, send it to the stream's viewers; its number."""
    body = json.dumps(message, separators=(",", ":"))
    seq = _the_buffer().append(stream, body, settings.LATTICE_STREAM_BACKLOG)
    _fan_out(group_name(stream), {"type": "stream.message", "seq": seq, "body": body})
    return seq


def stream_broadcast(stream: str, message: dict[str, Any]) -> None:
    """Send ``message`` to the stream's viewers now, unnumbered and not kept: a snapshot
    the next one replaces (a deployment's metrics), which a late viewer never needs."""
    body = json.dumps(message, separators=(",", ":"))
    _fan_out(group_name(stream), {"type": "stream.broadcast", "body": body})


def stream_publish_frame(
    stream: str, message: dict[str, Any], *, source: str, frame: int
) -> int | None:
    """Publish frame ``frame`` (1, 2, ...) of ``source``'s frames to ``stream``, in order:
    after frame - 1, waiting up to FRAME_WAIT for it; its number, or None when it came too
    late (that frame or a later one of ``source`` already went out)."""
    body = json.dumps(message, separators=(",", ":"))
    buffer = _the_buffer()
    keep = settings.LATTICE_STREAM_BACKLOG
    deadline = time.monotonic() + FRAME_WAIT
    # Frames almost always come in order: one round trip. One that came early waits on the
    # (small) cursor, polled less and less often, and goes to Redis again only when due.
    seq = buffer.append_frame(stream, body, keep, source, frame, force=False)
    pause = 0.002
    while seq == _OUT_OF_ORDER:
        # Its predecessor is almost always being published by another thread of this
        # process (the control worker runs frames on threads): woken the moment one goes
        # out, not after a sleep. One published elsewhere is seen by the poll.
        with _frames_out:
            _frames_out.wait(pause)
        pause = min(pause * 2, FRAME_POLL_MAX)
        force = time.monotonic() >= deadline
        if force or buffer.frame_cursor(stream, source) >= frame - 1:
            seq = buffer.append_frame(stream, body, keep, source, frame, force=force)
    if seq == 0:
        return None
    try:
        _fan_out(group_name(stream), {"type": "stream.message", "seq": seq, "body": body})
    finally:
        # After its fan-out: the next frame's goes out after this one's, in order.
        with _frames_out:
            _frames_out.notify_all()
    return seq


def stream_after(stream: str, seq: int, limit: int = 1000) -> list[dict[str, Any]]:
    """Buffered messages numbered after ``seq``, oldest first, each with its "seq"."""
    return [{"seq": n, **json.loads(body)} for n, body in _the_buffer().after(stream, seq, limit)]


def numbered(seq: int, body: str) -> str:
    """The text a viewer gets for message ``seq`` whose serialised object is ``body``: the
    same object with ``"seq"`` first, made without parsing ``body`` again."""
    return f'{{"seq":{seq},{body[1:]}' if body != "{}" else f'{{"seq":{seq}}}'


def stream_after_text(stream: str, seq: int, limit: int = 1000) -> list[tuple[int, str]]:
    """Like ``stream_after``, each message as (its number, its text as viewers get it)."""
    return [(n, numbered(n, body)) for n, body in _the_buffer().after(stream, seq, limit)]


def stream_last(stream: str) -> int:
    """The number of the stream's latest message (0 before the first)."""
    return _the_buffer().last(stream)


@dataclass(frozen=True)
class Resume:
    """Where a client resumes a stream: after ``after``; the buffer's ``epoch`` and ``last``
    number to tell it; ``restarted`` when its numbers belong to a lost buffer."""

    after: int
    last: int
    epoch: str
    restarted: bool


def stream_resume(stream: str, after: int, epoch: str | None = None) -> Resume:
    """Where a client that last saw message ``after`` of the buffer with ``epoch`` resumes.

    The stream restarted (its buffer was lost and made again) when ``epoch`` is not the
    buffer's, or when ``after`` is beyond the last number:
    then it resumes from the start, and must forget its numbers."""
    current, last = _the_buffer().position(stream)
    # A number beyond the last says so whatever the epoch: Redis may evict the numbering
    # alone, and the buffer starts again under the same epoch.
    restarted = after > 0 and (after > last or (bool(epoch) and epoch != current))
    return Resume(after=0 if restarted else after, last=last, epoch=current, restarted=restarted)


def group_send(group: str, payload: dict[str, Any]) -> None:
    """Send ``payload`` to a channel-layer group from any thread (sync code included)."""
    _fan_out(group, payload)


def _fan_out(group: str, payload: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        loop = _server_loop
        if loop is None or loop.is_closed():
            return  # nobody has ever connected to this process: nobody to tell
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(layer.group_send(group, payload))
        else:
            asyncio.run_coroutine_threadsafe(layer.group_send(group, payload), loop)
        return
    # One event loop per publishing thread, kept: channels-redis pools connections per loop.
    loop = getattr(_thread, "loop", None)
    if loop is None:
        loop = _thread.loop = asyncio.new_event_loop()
    loop.run_until_complete(layer.group_send(group, payload))
