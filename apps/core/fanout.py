"""Fan-out of live streams inside one web process: one subscription per stream, many viewers.

A viewer's websocket consumer (apps.teams.consumers.TeamStreamConsumer) does not join
the stream's channel-layer group itself. It registers a ``Viewer`` with this process's
``Hub`` (one per event loop: the server's). The hub keeps one ``Feed`` per stream that
has local viewers: the feed joins the group once, receives each message once, keeps its
serialised text (``{"seq":N,...}``, made once) and hands it to every viewer of the
stream: an append to the viewer's queue and a wake-up of its writer task. No thread hop,
no database, no JSON parsing per message per viewer.

Each viewer has its own writer task, so a socket that does not drain delays nobody but
itself. The writer sends at most once per ``COALESCE`` seconds: when more than one
message is due, they go as one text message holding a JSON array of them (the very
objects a single message would carry, ``seq`` included), up to ``SEND_BYTES`` of text;
what a full batch left goes on in the next one at once, at the socket's pace. A viewer
whose queue passes its bounds (``QUEUE_BOUND`` messages or ``QUEUE_BYTES`` bytes), or
whose send has not returned for ``STALL`` seconds while more is due, is switched to
*tail*: its queued
messages are dropped, it is sent ``{"type": "skipped", "from": a, "to": b}`` (the
numbers it missed) and then the newest messages. The skipped ones stay in the stream's
buffer (apps.core.stream) for a client that asks for them (``{"type": "backlog", ...}``,
answered by the consumer).

Holes (a message the channel layer dropped, or one overtaken by a later publisher's) are
filled once per feed from the stream's buffer, in order, in pages (at most ``_FILL_MAX``),
before the later message goes out; a viewer that registers while messages are in flight
fills its own first hole the same way (one page; its writer does, off the feed's path).
What the buffer no longer holds (or cannot give) is told as ``skipped``: a viewer gets
every message or a notice of those it missed, never a silent hole. A stream that starts
over (its buffer lost: another epoch, or fewer numbers than handed on) is told to the
viewers (``{"type": "restarted"}``), who forget their numbers. A feed joins its group
again every ``REJOIN`` seconds and when a viewer registers with it (layers expire group
memberships).

Works on any channel layer (Redis pub/sub, the embedded in-memory one): a feed is a
plain channel of the layer, subscribed to the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from apps.core.stream import group_name, numbered, stream_after_text, stream_resume

log = logging.getLogger(__name__)

# A viewer gets at most one websocket message per this many seconds (more are batched).
COALESCE = 0.05
# A viewer whose send has not returned for this long while more is due goes to tail.
STALL = 1.0
# A viewer's queue bounds (messages, and bytes of text); past either, it goes to tail.
QUEUE_BOUND = 2000
QUEUE_BYTES = 8 * 1024 * 1024
# The most text one websocket message carries (a batch stops before it; a single message
# bigger than this still goes alone). What is left stays queued for the next send: a
# viewer that fell behind is not sent its whole queue as one giant text (tens of MB held
# per viewer while the socket takes it, and a client that waits for the whole of it).
SEND_BYTES = 256 * 1024
# The most messages fetched from the buffer at once to fill a hole (a viewer's fill takes
# one page, what is left past it is told as skipped), and the most a feed's fill takes in
# all (pages of _FILL_PAGE; the viewers fill or announce the rest).
_FILL_PAGE = 1000
_FILL_MAX = QUEUE_BOUND
# A feed joins its group again this often (seconds; at most a third of the layer's
# group_expiry): layers end group memberships older than that, and an in-memory layer
# ends a channel's when one of its messages expired unread.
REJOIN = 30.0
# The queue entry that says the stream started over (its numbers begin again): the
# viewer forgets its numbers there and the client is told ``{"type": "restarted"}``.
_RESTART = -1

Send = Callable[[str], Awaitable[None]]


class Viewer:
    """One websocket's share of a stream: its queue and its writer task.

    ``send`` sends one text message on the socket. ``last``: the number of the last
    numbered message the client has (the consumer's catch-up sets it before ``start``).
    ``allowed`` is asked before each send: False (access lost) stops the writer."""

    def __init__(
        self,
        stream: str,
        send: Send,
        *,
        allowed: Callable[[], bool] = lambda: True,
        bound: int | None = None,
    ) -> None:
        self.stream = stream
        self._send = send
        self._allowed = allowed
        self.bound = bound or QUEUE_BOUND
        self.last = 0
        self.queue: deque[tuple[int | None, str]] = deque()
        self.queued_bytes = 0
        self.skipped: tuple[int, int] | None = None  # a range not yet told to the client
        self.tail = False  # went to tail at least once
        self.skipped_total = 0
        self._queued_upto = 0  # the highest number queued (or sent)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending_since: float | None = None
        self._next_send = 0.0
        self.sends = 0

    # --- called by the feed (on the loop, never awaiting) ------------------------------

    def push(self, seq: int | None, text: str) -> None:
        if seq is not None:
            if seq <= self._queued_upto:
                return  # the client has it, or has it queued
            self._queued_upto = seq
        self.queue.append((seq, text))
        self.queued_bytes += len(text)
        stalled = self._sending_since is not None and time.monotonic() - self._sending_since > STALL
        if (
            len(self.queue) > self.bound
            or (self.queued_bytes > QUEUE_BYTES and len(self.queue) > 1)
            or (stalled and len(self.queue) > 1)
        ):
            self._to_tail()
        self._wake.set()

    def _last_restart(self) -> int:
        """The index in the queue of the last restart entry (-1: none)."""
        for index in range(len(self.queue) - 1, -1, -1):
            if self.queue[index][0] == _RESTART:
                return index
        return -1

    def restart(self, notice: str) -> None:
        """The stream started over: what follows is numbered from 1 again."""
        self.queue.append((_RESTART, notice))
        self.queued_bytes += len(notice)
        self._queued_upto = 0
        self.skipped = None
        self._wake.set()

    def _to_tail(self) -> None:
        """Drop what is queued but the newest message (and a restart entry, which stays);
        remember the numbers dropped."""
        newest = self.queue.pop()
        restart = self._last_restart()
        kept = [self.queue[restart]] if restart >= 0 and newest[0] != _RESTART else []
        dropped = [seq for seq, _ in list(self.queue)[restart + 1 :] if seq is not None]
        if newest[0] == _RESTART:
            dropped = []
        self.queue.clear()
        self.queue.extend([*kept, newest])
        self.queued_bytes = sum(len(text) for _, text in self.queue)
        if restart >= 0:
            self.skipped = None  # numbers of before the restart: nothing to tell
        if not dropped:
            return
        self.tail = True
        self.skipped_total += len(dropped)
        first, last = dropped[0], dropped[-1]
        if self.skipped is not None:
            first = self.skipped[0]
        self.skipped = (first, last)

    # --- the writer --------------------------------------------------------------------

    def start(self) -> None:
        restart = self._last_restart()
        if restart < 0:
            self._queued_upto = max(self._queued_upto, self.last)
        # Drop what the catch-up already sent, and say nothing of it as skipped (entries
        # after a restart are numbered anew: they stay).
        self.queue = deque(
            item
            for index, item in enumerate(self.queue)
            if index >= restart >= 0 or item[0] is None or item[0] > self.last
        )
        self.queued_bytes = sum(len(text) for _, text in self.queue)
        if self.skipped is not None:
            first, last = max(self.skipped[0], self.last + 1), self.skipped[1]
            self.skipped = (first, last) if first <= last else None
        self._task = asyncio.get_running_loop().create_task(self._write())
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _write(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            delay = self._next_send - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # coalesce: what arrives meanwhile goes along
            if not self._allowed():
                return
            parts = await self._due()
            if not parts:
                continue
            text = parts[0] if len(parts) == 1 else "[" + ",".join(parts) + "]"
            started = time.monotonic()
            self._sending_since = started
            try:
                await self._send(text)
            finally:
                self._sending_since = None
            self.sends += 1
            # What a capped batch left (SEND_BYTES) goes on at the socket's pace; a drained
            # queue waits COALESCE for the next.
            self._next_send = started + COALESCE if not self.queue else 0.0
            if self.queue or self.skipped:
                self._wake.set()

    async def _due(self) -> list[str]:
        """The texts to send now, in order: a skipped notice, a hole's fill, the queue;
        about SEND_BYTES of them at most (the rest stays queued, in order)."""
        parts: list[str] = []
        size = 0
        if self.skipped is not None:
            first, last = self.skipped
            self.skipped = None
            parts.append(_skipped(first, last))
            self.last = max(self.last, last)
        while self.queue and (size < SEND_BYTES or not parts):
            seq, text = self.queue.popleft()
            self.queued_bytes -= len(text)
            if seq is None:
                parts.append(text)
                size += len(text)
                continue
            if seq == _RESTART:
                self.last = 0
                parts.append(text)
                continue
            if seq <= self.last:
                continue
            if seq > self.last + 1:
                # A hole (a message the layer dropped, or this viewer registered while
                # messages were in flight): the buffer has them, in order. ``last`` is
                # exact here (0: the client has none), so a lost first message counts.
                size += await self._fill(parts, seq)
            parts.append(text)
            size += len(text)
            self.last = seq
        if not self.queue:
            self.queued_bytes = 0
        return parts

    async def _fill(self, parts: list[str], seq: int) -> int:
        """Append the buffered messages between ``last`` and ``seq`` to ``parts``; what the
        buffer no longer holds (or cannot give now) becomes a skipped notice, never a
        silent hole. The size of the text appended."""
        try:
            rows = await sync_to_async(stream_after_text, thread_sensitive=False)(
                self.stream, self.last, min(seq - self.last - 1, _FILL_PAGE)
            )
        except Exception:
            log.exception("stream %s: a hole could not be filled", self.stream)
            rows = []
        size = 0
        expected = self.last + 1
        for number, body in rows:
            if number >= seq:
                break
            if number < expected:
                continue
            if number > expected:
                parts.append(_skipped(expected, number - 1))
                self._count_skipped(expected, number - 1)
            parts.append(body)
            size += len(body)
            expected = number + 1
        if expected < seq:
            # Trimmed from the buffer, beyond one page, or the buffer failed: told.
            parts.append(_skipped(expected, seq - 1))
            self._count_skipped(expected, seq - 1)
        return size

    def _count_skipped(self, first: int, last: int) -> None:
        self.tail = True
        self.skipped_total += last - first + 1


def _skipped(first: int, last: int) -> str:
    return f'{{"type":"skipped","from":{first},"to":{last}}}'


class Feed:
    """One stream's subscription in this process: a channel of the layer in the group."""

    def __init__(self, hub: Hub, stream: str) -> None:
        self.hub = hub
        self.stream = stream
        self.viewers: set[Viewer] = set()
        self.last = 0  # the last number handed to the viewers (or the stream's when it began)
        self.epoch = ""  # the buffer's epoch (a new one: the stream started over)
        self._epoch_checked = 0.0
        self.received = 0
        self.layer = get_channel_layer()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.channel: str | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        layer = self.layer
        try:
            self.channel = await layer.new_channel(prefix="fanout")
            await layer.group_add(group_name(self.stream), self.channel)
            # Where the stream stands once subscribed: a hole after it is filled (the
            # first message lost included); one before it is no feed's business.
            position = await sync_to_async(stream_resume, thread_sensitive=False)(self.stream, 0)
            self.last, self.epoch = position.last, position.epoch
        except BaseException as error:
            if not self.ready.done():
                self.ready.set_exception(error)
            raise
        self.ready.set_result(None)
        rejoin = asyncio.get_running_loop().create_task(self._rejoin())
        try:
            await self._receive()
        finally:
            rejoin.cancel()

    async def rejoin(self) -> None:
        """Join the group again (a membership the layer let expire comes back)."""
        if self.channel is not None:
            with contextlib.suppress(Exception):
                await self.layer.group_add(group_name(self.stream), self.channel)

    async def _rejoin(self) -> None:
        expiry = float(getattr(self.layer, "group_expiry", 86400) or 86400)
        every = max(0.1, min(REJOIN, expiry / 3))
        while True:
            await asyncio.sleep(every)
            await self.rejoin()

    async def _receive(self) -> None:
        layer, channel = self.layer, self.channel or ""
        while True:
            message = await layer.receive(channel)
            self.received += 1
            try:
                await self._deliver(message)
            except Exception:  # a broken message must not end the feed
                log.exception("stream feed %s: message not delivered", self.stream)

    async def _deliver(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "stream.broadcast":
            text = message["body"]
            for viewer in self.viewers:
                viewer.push(None, text)
            return
        if kind != "stream.message":
            return
        seq = int(message["seq"])
        # One numbered at or below the last is handed on all the same: the viewers drop
        # it when they have it (one filled from the buffer before it arrived). When the
        # stream started over (a restart: the buffer has another epoch, or fewer numbers
        # than we handed on), the viewers are told and forget their numbers first.
        if seq <= self.last and await self._restarted(seq):
            notice = f'{{"type":"restarted","epoch":"{self.epoch}"}}'
            self.last = 0
            for viewer in self.viewers:
                viewer.restart(notice)
        if seq > self.last + 1:
            await self._fill(seq)
        text = numbered(seq, message["body"])
        for viewer in self.viewers:
            viewer.push(seq, text)
        self.last = max(self.last, seq)

    async def _restarted(self, seq: int) -> bool:
        """Whether the stream started over, asked of the buffer for a message numbered at
        or below the last handed on: always for a 1 (a restart's first), else at most once
        a second (the others are almost always a message a fill already handed on)."""
        now = time.monotonic()
        if seq != 1 and now - self._epoch_checked < 1.0:
            return False
        self._epoch_checked = now
        position = await sync_to_async(stream_resume, thread_sensitive=False)(self.stream, 0)
        if position.epoch == self.epoch and position.last >= self.last:
            return False
        self.epoch = position.epoch
        return True

    async def _fill(self, seq: int) -> None:
        """Hand the viewers the buffered messages after ``last`` and before ``seq``, in
        pages, at most _FILL_MAX (each viewer fills or announces what is left itself)."""
        after = self.last
        filled = 0
        while after < seq - 1 and filled < _FILL_MAX:
            want = min(seq - 1 - after, _FILL_PAGE, _FILL_MAX - filled)
            rows = await sync_to_async(stream_after_text, thread_sensitive=False)(
                self.stream, after, want
            )
            rows = [(number, body) for number, body in rows if number < seq]
            if not rows:
                return
            for number, body in rows:
                for viewer in self.viewers:
                    viewer.push(number, body)
            after = rows[-1][0]
            filled += len(rows)
            if len(rows) < want:
                return

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        if self.channel is not None:
            with contextlib.suppress(Exception):
                await self.layer.group_discard(group_name(self.stream), self.channel)


class Hub:
    """The feeds of one event loop (the web server's), by stream."""

    def __init__(self) -> None:
        self.feeds: dict[str, Feed] = {}

    async def register(self, viewer: Viewer) -> None:
        """Subscribe ``viewer`` to its stream: from now on it queues every message (its
        writer starts with ``viewer.start()``). Returns once the feed is in the group."""
        feed = self.feeds.get(viewer.stream)
        old = feed is not None
        if feed is None:
            feed = self.feeds[viewer.stream] = Feed(self, viewer.stream)
        feed.viewers.add(viewer)
        try:
            await asyncio.shield(feed.ready)
            if old:
                # Join again, so a membership the layer let expire comes back now rather
                # than at the feed's next periodic rejoin.
                await feed.rejoin()
        except BaseException:
            await self.unregister(viewer)
            raise

    async def unregister(self, viewer: Viewer) -> None:
        await viewer.stop()
        feed = self.feeds.get(viewer.stream)
        if feed is None or viewer not in feed.viewers:
            return
        feed.viewers.discard(viewer)
        if not feed.viewers:
            del self.feeds[viewer.stream]
            await feed.close()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """This event loop's hub (made on first use)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found
