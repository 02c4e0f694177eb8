"""The agent ships each workload's output to the control plane, in batches.

One reader thread follows the runtime's log and puts lines on a queue; one
shipper thread takes them off and sends a frame when it holds
LATTICE_LOG_BATCH_LINES lines or the oldest has waited LATTICE_LOG_BATCH_SECONDS,
whichever comes first: what arrived within that time, or, when lines backed up
while the last frame was being sent, all of them up to that many (a frame's
cost to the control plane is mostly per frame, so a backlog is caught up in
fewer, bigger ones). A frame is one signed "logs" message on the inbox
(apps.machines.inbox): the workload's name, this shipper's id, the frame's
number and its lines. The control plane publishes it to the live stream of
that workload, if the workload is placed on this host, in the order the
shipper numbered them (apps.machines.reports.workload_logs); an agent writes to
no stream itself. Shipping ends when the log ends (the workload stopped);
``ship_logs`` starts it at most once per workload.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings

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
    ) -> None:
        self.runtime = runtime
        self.state = state
        self.host_name = host_name
        self.since = since
        # Frames are numbered per shipper: the control plane keeps each shipper's in order.
        self.source = secrets.token_hex(8)
        self.frames = 0
        self.lines: queue.Queue[Any] = queue.Queue(maxsize=200_000)
        self.done = threading.Event()
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
            longest = settings.LATTICE_LOG_LINE_MAX_CHARS
            for line in self.runtime.logs(self.state, since=self.since, follow=True):
                if len(line) > longest:
                    line = f"{line[:longest]} [line cut: {len(line):,} characters]"  # noqa: PLW2901
                self.lines.put(line)
        except Exception:
            logger.exception("following the log of %s failed", self.state["name"])
        finally:
            self.lines.put(_END)

    def _ship(self) -> None:
        limit = settings.LATTICE_LOG_BATCH_LINES
        size_limit = settings.LATTICE_LOG_BATCH_BYTES
        wait = settings.LATTICE_LOG_BATCH_SECONDS
        try:
            while True:
                first = self.lines.get()
                if first is _END:
                    return
                batch = [first]
                size = len(first)
                deadline = time.monotonic() + wait
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
                self._publish(batch)
                if ended:
                    return
        finally:
            self.done.set()

    def _publish(self, batch: list[str]) -> None:
        self.frames += 1
        name = self.state["name"]
        body = {"workload": name, "source": self.source, "frame": self.frames, "lines": batch}
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
) -> LogShipper:
    """Ship ``state``'s workload output, as host ``host_name``, unless a shipper already does."""
    with _lock:
        current = _shippers.get(state["name"])
        if current is not None and current.alive():
            return current
        shipper = _shippers[state["name"]] = LogShipper(runtime, state, host_name, since=since)
        shipper.start()
        return shipper
