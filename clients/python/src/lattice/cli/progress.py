"""The progress bar of uploads and downloads: bytes, speed and ETA on stderr.

The speed is measured here, over the bytes that actually moved in the last seconds (bytes the
server already held, skipped on a resume, do not count), and the ETA is derived from it: until
a speed has been measured the ETA reads "ETA unknown", never a guess.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn

from lattice.cli import output

if TYPE_CHECKING:
    from types import TracebackType

    from lattice.types import TransferProgress

_WINDOW_S = 5.0  # the speed is the bytes moved over the last few seconds
_PAIR = 2  # a speed needs two samples
_MIN_SAMPLE_S = 1.0  # no speed (and no ETA) from less than a second of data

_PHASES = {
    "hashing": "Hashing",
    "sending": "Uploading",
    "completing": "Finishing",
    "done": "Done",
    "receiving": "Downloading",
}


class SpeedMeter:
    """Bytes per second over a sliding window of (time, moved bytes) samples."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, moved: int) -> None:
        now = self.clock()
        self.samples.append((now, moved))
        while len(self.samples) > _PAIR and now - self.samples[1][0] > _WINDOW_S:
            self.samples.popleft()

    def speed(self) -> float | None:
        if len(self.samples) < _PAIR:
            return None
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        if t1 - t0 < _MIN_SAMPLE_S or b1 <= b0:
            return None
        return (b1 - b0) / (t1 - t0)


def eta_text(remaining: int, speed: float | None) -> str:
    if speed is None or speed <= 0:
        return "ETA unknown"
    seconds = int(remaining / speed)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"ETA {hours}:{minutes:02d}:{secs:02d}" if hours else f"ETA {minutes}:{secs:02d}"


def speed_text(speed: float | None) -> str:
    return f"{output.size(speed)}/s" if speed else "-- /s"


class TransferBar:
    """``with TransferBar("cats") as bar: sdk.upload(..., progress=bar)``: a rich bar on
    stderr, updated from the SDK's callback (which may run on worker threads)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.console = output.stderr()
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TextColumn("{task.fields[speed]}"),
            TextColumn("{task.fields[eta]}"),
            console=self.console,
            transient=False,
        )
        self.task: TaskID | None = None
        self.meter = SpeedMeter()
        self.phase = ""
        self.last: TransferProgress | None = None
        self.downloading = False
        self.lock = threading.Lock()

    def __enter__(self) -> TransferBar:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def __call__(self, update: TransferProgress) -> None:
        with self.lock:
            if update.phase == "receiving":
                self.downloading = True
            if update.phase in ("sending", "receiving") or self.last is None:
                self.last = update  # "completing" and "done" carry no counters
            if update.phase != self.phase:
                self.phase = update.phase
                self.meter = SpeedMeter()  # hashing speed says nothing about the network
            moved = (
                update.done_bytes if update.phase in ("hashing", "receiving") else update.sent_bytes
            )
            self.meter.add(moved)
            speed = self.meter.speed()
            remaining = max(update.total_bytes - update.done_bytes, 0)
            phase = _PHASES.get(update.phase, update.phase.title())
            description = f"{phase} {escape(self.label)}"
            rate = speed_text(speed)
            eta = "" if update.phase in ("completing", "done") else eta_text(remaining, speed)
            if self.task is None:
                self.task = self.progress.add_task(
                    description,
                    total=update.total_bytes or None,
                    completed=update.done_bytes,
                    speed=rate,
                    eta=eta,
                )
            else:
                self.progress.update(
                    self.task,
                    description=description,
                    total=update.total_bytes or None,
                    completed=update.done_bytes,
                    speed=rate,
                    eta=eta,
                )

    def summary(self) -> str:
        """What moved: "sent 1.2 GiB in 340 chunks, 800 MiB already on the server"."""
        last = self.last
        if last is None:
            return ""
        if self.downloading:
            return f"received {output.size(last.done_bytes)}"
        parts = [f"sent {output.size(last.sent_bytes)} in {last.chunks_sent} chunks"]
        if last.skipped_bytes:
            parts.append(
                f"{output.size(last.skipped_bytes)} ({last.chunks_skipped} chunks) "
                "already on the server"
            )
        return ", ".join(parts)
