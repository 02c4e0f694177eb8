"""The agent ships each workload's output to the control plane, in batches.

One reader thread follows the runtime's log and puts lines on a queue; one
shipper thread takes them off and sends a frame when it holds
LATTICE_LOG_BATCH_LINES lines or LATTICE_LOG_BATCH_SECONDS have passed since the last
frame went (a line after a quiet spell goes at once), whichever comes first: what
arrived within that time, or, when lines backed up
while the last frame was being sent, all of them up to that many (a frame's
cost to the control plane is mostly per frame, so a backlog is caught up in
fewer, bigger ones). A frame is one signed "logs" message on the inbox
(apps.machines.inbox): the workload's name, this shipper's id, the frame's
number and its lines. The control plane publishes it to the live stream of
that workload, if the workload is placed on this host, in the order the
shipper numbered them (apps.machines.reports.workload_logs); an agent writes to
no stream itself. Shipping ends when the log ends (the workload stopped);
``ship_logs`` starts it at most once per workload.

A shipper started for a workload that already runs (the agent restarted, or the
control plane with it: under ``make dev`` they are one process, and the stream's
buffer is in its memory) first sends a backfill: the last ``backfill`` lines of
the runtime's log, as one frame marked ``"backfill": true``, then what the
workload printed after them (``Runtime.logs_backfill``: nothing between the two
is lost or sent twice). Whoever shows the stream replaces what it shows
with a backfill's lines (they are the workload's recent output, so nothing is
shown twice and a restarted control plane does not say "no log lines").
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import connections

from apps.machines.inbox import send

if TYPE_CHECKING:
    from apps.runtimes.base import Runtime

logger = logging.getLogger(__name__)

_END = object()
_shippers: dict[str, LogShipper] = {}
_lock = threading.Lock()


class LogShipper:
    def __init__(
        self,
        runtime: Runtime,
        state: dict[str, Any],
        host_name: str,
        *,
        since: float | None = None,
        backfill: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.state = state
        self.host_name = host_name
        self.since = since
        self.backfill = backfill
        # Frames are numbered per shipper: the control plane keeps each shipper's in order.
        self.source = secrets.token_hex(8)
        self.frames = 0
        self.lines: queue.Queue[Any] = queue.Queue(maxsize=200_000)
        self.done = threading.Event()
        # Set at each line read: a start waiting for its server to answer looks again at
        # once (the server says it listens), rather than at its next poll.
        self.printed = threading.Event()
        self.shipped = 0
        name = state["name"]
        self.reader = threading.Thread(target=self._read, name=f"logs-{name}", daemon=True)
        self.shipper = threading.Thread(target=self._ship, name=f"ship-{name}", daemon=True)

    def start(self) -> None:
        self.reader.start()
        self.shipper.start()

    def alive(self) -> bool:
        return not self.done.is_set()

    def _read(self) -> None:
        try:
            if self.backfill is not None:
                # The recent lines first, then what is printed after them: the runtime
                # follows on from where the recent lines ended, so a line printed while they
                # were read is shipped once, neither lost nor twice.
                recent, follow = self.runtime.logs_backfill(self.state, tail=self.backfill)
                self._publish(self._fit([self._cut(line) for line in recent]), backfill=True)
            else:
                follow = self.runtime.logs(self.state, since=self.since, follow=True)
            for line in follow:
                self.lines.put(self._cut(line))
                self.printed.set()
        except Exception:
            logger.exception("following the log of %s failed", self.state["name"])
        finally:
            self.lines.put(_END)

    @staticmethod
    def _cut(line: str) -> str:
        # apps.teams.secrets.mask reads this marker to mask a secret's start left at the end.
        longest = settings.LATTICE_LOG_LINE_MAX_CHARS
        return (
            f"{line[:longest]} [line cut: {len(line):,} characters]"
            if len(line) > longest
            else line
        )

    @staticmethod
    def _fit(lines: list[str]) -> list[str]:
        """The last of ``lines`` that fit one frame (LATTICE_LOG_BATCH_BYTES)."""
        size, kept = 0, 0
        for line in reversed(lines):
            size += len(line)
            if size > settings.LATTICE_LOG_BATCH_BYTES and kept:
                break
            kept += 1
        return lines[len(lines) - kept :]

    def _ship(self) -> None:
        limit = settings.LATTICE_LOG_BATCH_LINES
        size_limit = settings.LATTICE_LOG_BATCH_BYTES
        wait = settings.LATTICE_LOG_BATCH_SECONDS
        last_sent = -wait
        try:
            while True:
                first = self.lines.get()
                if first is _END:
                    return
                batch = [first]
                size = len(first)
                # At most one frame per ``wait``, but a line that comes after a quiet spell
                # is not held back: the window runs from the last frame sent, not from this
                # line (steady output still goes as one frame per ``wait``).
                deadline = max(time.monotonic(), last_sent + wait)
                ended = False
                # Within the inbox's size limit (LATTICE_INBOX_MAX_BYTES) with room to spare.
                while len(batch) < limit and size < size_limit:
                    remaining = deadline - time.monotonic()
                    try:
                        line = (
                            self.lines.get(timeout=max(remaining, 0))
                            if remaining > 0
                            else (self.lines.get_nowait())
                        )
                    except queue.Empty:
                        break
                    if line is _END:
                        ended = True
                        break
                    batch.append(line)
                    size += len(line)
                last_sent = time.monotonic()
                self._publish(batch)
                if ended:
                    return
        finally:
            self.done.set()
            # This thread's database connection, where the inbox runs in-process (a
            # single-machine install, tests): not left open behind it.
            connections.close_all()

    def _publish(self, batch: list[str], *, backfill: bool = False) -> None:
        self.frames += 1
        name = self.state["name"]
        body: dict[str, Any] = {
            "workload": name,
            "source": self.source,
            "frame": self.frames,
            "lines": batch,
        }
        if backfill:
            body["backfill"] = True
        try:
            send(self.host_name, "logs", body)
            self.shipped += len(batch)
        except Exception:
            logger.exception("could not send %d log lines of %s", len(batch), name)


def ship_logs(
    runtime: Runtime,
    state: dict[str, Any],
    host_name: str,
    *,
    since: float | None = None,
    backfill: int | None = None,
) -> LogShipper:
    """Ship ``state``'s workload output, as host ``host_name``, unless a shipper already does;
    with ``backfill``, its last that many lines first (see the module's docstring)."""
    with _lock:
        current = _shippers.get(state["name"])
        if current is not None and current.alive():
            return current
        shipper = _shippers[state["name"]] = LogShipper(
            runtime, state, host_name, since=since, backfill=backfill
        )
        shipper.start()
        return shipper
