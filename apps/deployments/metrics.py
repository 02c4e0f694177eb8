"""What the gateway counts, and the reads of it (the deployment page, the autoscaler).

Each web process counts in memory, per revision and per second: requests, status classes
(2xx..5xx; a request the gateway answered itself because no replica could is a 5xx of the
revision it was meant for: the one chosen, or, held for a cold start and answered 503, the
one its weight would have chosen, else the deployment's newest), a latency histogram over
``LATENCY_BUCKETS_MS`` (the last count is "slower than the last bucket"), the latency sum,
and requests in flight (now, and the most during the second; now also per replica, for
the controller's drain). A background task per
process (``flusher_start``) writes each finished second once a second into ``MetricWindow``
rows (an upsert on revision, second, process) and ``Deployment.last_request_at``; a second
with requests still in flight gets a row too, so ``in_flight`` sees long requests.

Request lines (method, path without its query, status, ms, revision, time; never a body
or a credential) are kept per deployment: the last ``LOG_LINES`` in each process's memory
and, on each flush, in the cache under that process's key, where ``recent_requests``
(any process) reads and merges them.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from channels.db import database_sync_to_async
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

if TYPE_CHECKING:
    from apps.deployments.models import Deployment

logger = logging.getLogger(__name__)

LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1,
    2.5,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
)
STATUS_FIELDS = ("status_2xx", "status_3xx", "status_4xx", "status_5xx")
LOG_LINES = 200
IN_FLIGHT_SECONDS = 3
# Who counted a window: this process (host, pid, and a nonce for a reused pid).
PROCESS = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"
_LOG_TTL = 24 * 3600


class _Second:
    __slots__ = ("latency", "latency_sum", "requests", "statuses")

    def __init__(self) -> None:
        self.requests = 0
        self.statuses = [0, 0, 0, 0]  # 2xx, 3xx, 4xx, 5xx
        self.latency = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.latency_sum = 0.0


class _Counts:
    """This process's counts since the last flush (thread-safe: tests run the server's loop in
    a thread beside the test's)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # (revision id) -> (deployment id, team id)
        self.owners: dict[int, tuple[int, int]] = {}
        self.seconds: dict[tuple[int, int], _Second] = {}  # (revision, epoch second)
        self.in_flight: dict[int, int] = {}
        self.in_flight_max: dict[int, int] = {}
        # replica id -> (its revision id, requests in flight to it now)
        self.replicas: dict[int, tuple[int, int]] = {}
        self.lines: dict[int, deque[dict[str, Any]]] = {}  # deployment -> recent lines
        self.dirty_lines: set[int] = set()

    def started(
        self, *, revision_id: int, deployment_id: int, team_id: int, replica_id: int | None = None
    ) -> None:
        with self.lock:
            self.owners[revision_id] = (deployment_id, team_id)
            self._replica(revision_id, replica_id, +1)
            now = self.in_flight.get(revision_id, 0) + 1
            self.in_flight[revision_id] = now
            if now > self.in_flight_max.get(revision_id, 0):
                self.in_flight_max[revision_id] = now

    def finished(
        self,
        *,
        revision_id: int,
        status: int,
        ms: float,
        method: str,
        path: str,
        replica_id: int | None = None,
    ) -> None:
        with self.lock:
            self._replica(revision_id, replica_id, -1)
            self.in_flight[revision_id] = max(0, self.in_flight.get(revision_id, 1) - 1)
            self._count(revision_id, status, ms, method, path)

    def answered(
        self,
        *,
        revision_id: int,
        deployment_id: int,
        team_id: int,
        status: int,
        ms: float,
        method: str,
        path: str,
    ) -> None:
        """A request the gateway answered itself, no replica having taken it (held for a
        cold start, then 503): counted and logged like any other, never in flight."""
        with self.lock:
            self.owners[revision_id] = (deployment_id, team_id)
            self._count(revision_id, status, ms, method, path)

    def _count(self, revision_id: int, status: int, ms: float, method: str, path: str) -> None:
        """One answered request into this second's counts and the lines (lock held)."""
        now = time.time()
        bucket = bisect.bisect_left(LATENCY_BUCKETS_MS, ms)
        key = (revision_id, int(now))
        second = self.seconds.get(key)
        if second is None:
            second = self.seconds[key] = _Second()
        second.requests += 1
        if 200 <= status < 600:  # noqa: PLR2004
            second.statuses[max(0, min(3, status // 100 - 2))] += 1
        second.latency[bucket] += 1
        second.latency_sum += ms
        deployment_id = self.owners[revision_id][0]
        lines = self.lines.get(deployment_id)
        if lines is None:
            lines = self.lines[deployment_id] = deque(maxlen=LOG_LINES)
        lines.append(
            {
                "time": now,
                "method": method,
                "path": path,
                "status": status,
                "ms": round(ms, 2),
                "revision": revision_id,
            }
        )
        self.dirty_lines.add(deployment_id)

    def cancel(self, *, revision_id: int, replica_id: int | None = None) -> None:
        """A request that never reached the replica (it refused the connection)."""
        with self.lock:
            self._replica(revision_id, replica_id, -1)
            self.in_flight[revision_id] = max(0, self.in_flight.get(revision_id, 1) - 1)

    def _replica(self, revision_id: int, replica_id: int | None, change: int) -> None:
        """Count a request to or from the replica's own gauge (under the lock)."""
        if replica_id is None:
            return
        now = max(0, self.replicas.get(replica_id, (revision_id, 0))[1] + change)
        if now:
            self.replicas[replica_id] = (revision_id, now)
        else:
            self.replicas.pop(replica_id, None)

    def take(self, before: int) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
        """The windows of every second before ``before`` (and of revisions with requests in
        flight, as the second ``before - 1``), and the changed deployments' lines."""
        rows: dict[tuple[int, int], dict[str, Any]] = {}
        with self.lock:
            for (revision_id, second), counts in list(self.seconds.items()):
                if second >= before:
                    continue
                del self.seconds[(revision_id, second)]
                rows[(revision_id, second)] = {
                    "revision_id": revision_id,
                    "second": second,
                    "requests": counts.requests,
                    "statuses": counts.statuses,
                    "latency": counts.latency,
                    "latency_sum_ms": counts.latency_sum,
                    "in_flight": 0,
                    "in_flight_max": 0,
                    "in_flight_replicas": {},
                }
            latest: dict[int, int] = {}
            for revision_id, second in rows:
                latest[revision_id] = max(second, latest.get(revision_id, second))
            for revision_id, peak in list(self.in_flight_max.items()):
                now = self.in_flight.get(revision_id, 0)
                if revision_id not in latest and not peak:
                    continue
                second = latest.get(revision_id, before - 1)
                row = rows.get((revision_id, second))
                if row is None:
                    row = rows[(revision_id, second)] = {
                        "revision_id": revision_id,
                        "second": second,
                        "requests": 0,
                        "statuses": [0, 0, 0, 0],
                        "latency": [0] * (len(LATENCY_BUCKETS_MS) + 1),
                        "latency_sum_ms": 0.0,
                    }
                row["in_flight"], row["in_flight_max"] = now, max(peak, now)
                row["in_flight_replicas"] = {
                    str(replica_id): n
                    for replica_id, (revision, n) in self.replicas.items()
                    if revision == revision_id and n
                }
                self.in_flight_max[revision_id] = now
                if not now:
                    del self.in_flight_max[revision_id]
            for row in rows.values():
                row["deployment_id"], row["team_id"] = self.owners[row["revision_id"]]
            lines = {d: list(self.lines[d]) for d in self.dirty_lines}
            self.dirty_lines.clear()
        return list(rows.values()), lines

    def in_flight_now(self) -> dict[int, int]:
        with self.lock:
            return {r: n for r, n in self.in_flight.items() if n}


counts = _Counts()


def _log_key(deployment_id: int, process: str) -> str:
    return f"lattice:gateway:log:{deployment_id}:{process}"


def _log_processes_key(deployment_id: int) -> str:
    return f"lattice:gateway:log-processes:{deployment_id}"


def flush(before: int | None = None) -> int:
    """Write what this process counted before the second ``before`` (now by default); return
    how many windows were written."""
    from apps.deployments.models import Deployment, MetricWindow

    rows, lines = counts.take(int(time.time()) if before is None else before)
    if rows:
        windows = [
            MetricWindow(
                team_id=row["team_id"],
                deployment_id=row["deployment_id"],
                revision_id=row["revision_id"],
                second=datetime.fromtimestamp(row["second"], tz=UTC),
                process=PROCESS,
                requests=row["requests"],
                status_2xx=row["statuses"][0],
                status_3xx=row["statuses"][1],
                status_4xx=row["statuses"][2],
                status_5xx=row["statuses"][3],
                latency=row["latency"],
                latency_sum_ms=row["latency_sum_ms"],
                in_flight=row["in_flight"],
                in_flight_max=row["in_flight_max"],
                in_flight_replicas=row.get("in_flight_replicas", {}),
            )
            for row in rows
        ]
        try:
            _upsert(windows)
        except IntegrityError:
            # A deployment deleted since it was counted: write the others' one by one.
            for window in windows:
                with contextlib.suppress(IntegrityError):
                    _upsert([window])
        last: dict[tuple[int, int], int] = {}
        for row in rows:
            if row["requests"]:
                key = (row["deployment_id"], row["team_id"])
                last[key] = max(row["second"], last.get(key, 0))
        for (deployment_id, team_id), second in last.items():
            Deployment.objects.for_team(team_id).filter(pk=deployment_id).update(
                last_request_at=datetime.fromtimestamp(second + 1, tz=UTC)
            )
    for deployment_id, kept in lines.items():
        cache.set(_log_key(deployment_id, PROCESS), kept, timeout=_LOG_TTL)
        processes = cache.get(_log_processes_key(deployment_id)) or []
        if PROCESS not in processes:
            cache.set(
                _log_processes_key(deployment_id), [*processes[-15:], PROCESS], timeout=_LOG_TTL
            )
    return len(rows)


def _upsert(windows: list[Any]) -> None:
    from apps.deployments.models import MetricWindow

    with transaction.atomic():
        MetricWindow.objects.bulk_create(
            windows,
            update_conflicts=True,
            unique_fields=["revision", "second", "process"],
            update_fields=[
                "requests",
                *STATUS_FIELDS,
                "latency",
                "latency_sum_ms",
                "in_flight",
                "in_flight_max",
                "in_flight_replicas",
            ],
        )


_flushers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


def flusher_start() -> None:
    """Start this event loop's once-a-second flush, if it has none (cheap to call per request)."""
    loop = asyncio.get_running_loop()
    task = _flushers.get(loop)
    if task is None or task.done():
        _flushers[loop] = loop.create_task(_flush_forever())


async def _flush_forever() -> None:
    write = database_sync_to_async(flush)
    while True:
        await asyncio.sleep(1.0 - (time.time() % 1.0) + 0.01)
        try:
            await write()
        except Exception:
            logger.exception("the gateway's metrics flush failed; the counts of a second lost")


# --- reads ------------------------------------------------------------------------------


def _windows(deployment_id: int) -> Any:
    from apps.deployments.models import MetricWindow

    # Called with a deployment id alone (the controller's contract); limited to it here.
    return MetricWindow.objects.unscoped().filter(deployment_id=deployment_id)


def _latest_windows(deployment_id: int) -> list[tuple[int, int, dict[str, int]]]:
    """(revision id, in flight, in flight per replica) of each process's latest window of
    each revision in the last ``IN_FLIGHT_SECONDS`` seconds."""
    since = timezone.now() - timedelta(seconds=IN_FLIGHT_SECONDS)
    latest = (
        _windows(deployment_id)
        .filter(second__gte=since)
        .values("revision_id", "process")
        .annotate(last=Max("second"))
    )
    wanted = {(row["revision_id"], row["process"], row["last"]) for row in latest}
    if not wanted:
        return []
    rows = (
        _windows(deployment_id)
        .filter(second__gte=since)
        .values_list("revision_id", "process", "second", "in_flight", "in_flight_replicas")
    )
    return [
        (revision_id, now, replicas or {})
        for revision_id, process, second, now, replicas in rows
        if (revision_id, process, second) in wanted
    ]


def in_flight(deployment_id: int) -> dict[int, int]:
    """Revision id -> requests in flight now, over every web process (each process's latest
    window of the last ``IN_FLIGHT_SECONDS`` seconds)."""
    totals: dict[int, int] = {}
    for revision_id, now, _replicas in _latest_windows(deployment_id):
        totals[revision_id] = totals.get(revision_id, 0) + now
    return totals


def in_flight_replicas(deployment_id: int) -> dict[int, int]:
    """Replica id -> requests in flight to it now, over every web process (read as
    ``in_flight``). A request is counted from the moment the gateway chose its replica, and
    reaches the database with the next flush (within a second); a process that has sent
    nothing for ``IN_FLIGHT_SECONDS`` counts none."""
    totals: dict[int, int] = {}
    for _revision_id, _now, replicas in _latest_windows(deployment_id):
        for replica_id, n in replicas.items():
            totals[int(replica_id)] = totals.get(int(replica_id), 0) + int(n)
    return totals


def percentile(histogram: list[int], fraction: float) -> float | None:
    """The latency (ms) under which ``fraction`` of the histogram's requests fall, read as the
    bucket's upper bound (the last bound for requests slower than every bucket); None when
    it holds no request."""
    total = sum(histogram)
    if not total:
        return None
    wanted = fraction * total
    seen = 0
    for index, count in enumerate(histogram):
        seen += count
        if seen >= wanted:
            return float(LATENCY_BUCKETS_MS[min(index, len(LATENCY_BUCKETS_MS) - 1)])
    return float(LATENCY_BUCKETS_MS[-1])


def series(deployment: Deployment, *, seconds: int = 900, step: int = 5) -> dict[str, Any]:
    """Per step of the last ``seconds``: requests per second by revision, status classes
    (counts), p50/p95/p99 (ms, None without requests) and in flight (the most any second of
    the step had, over every process). Steps nobody counted anything in have zero requests
    and None percentiles; ``since`` says from when the gateway has counted at all."""
    now = int(time.time())
    end = now - now % step
    start = end - seconds
    rows = (
        _windows(deployment.pk)
        .filter(second__gte=datetime.fromtimestamp(start, tz=UTC))
        .values_list("revision_id", "second", "requests", *STATUS_FIELDS, "latency", "in_flight")
    )
    size = len(LATENCY_BUCKETS_MS) + 1
    points: dict[int, dict[str, Any]] = {}
    in_flight_per_second: dict[int, int] = {}
    revisions: set[int] = set()
    for revision_id, second, requests, s2, s3, s4, s5, latency, now_in_flight in rows:
        epoch = int(second.timestamp())
        at = epoch - epoch % step
        point = points.get(at)
        if point is None:
            point = points[at] = {
                "requests": {},
                "statuses": [0, 0, 0, 0],
                "latency": [0] * size,
            }
        revisions.add(revision_id)
        point["requests"][revision_id] = point["requests"].get(revision_id, 0) + requests
        for index, value in enumerate((s2, s3, s4, s5)):
            point["statuses"][index] += value
        for index, value in enumerate((latency or [])[:size]):
            point["latency"][index] += value
        in_flight_per_second[epoch] = in_flight_per_second.get(epoch, 0) + now_in_flight
    out = []
    for at in range(start, end + 1, step):
        point = points.get(at)
        in_flight_now = max(
            (in_flight_per_second.get(s, 0) for s in range(at, at + step)), default=0
        )
        histogram = point["latency"] if point else [0] * size
        out.append(
            {
                "t": at,
                "rps": {
                    str(r): round(n / step, 3) for r, n in (point or {}).get("requests", {}).items()
                },
                "requests": sum((point or {}).get("requests", {}).values()),
                "status": dict(
                    zip(
                        ("2xx", "3xx", "4xx", "5xx"),
                        point["statuses"] if point else [0] * 4,
                        strict=True,
                    )
                ),
                "p50": percentile(histogram, 0.5),
                "p95": percentile(histogram, 0.95),
                "p99": percentile(histogram, 0.99),
                "in_flight": in_flight_now,
            }
        )
    first = _windows(deployment.pk).order_by("second").values_list("second", flat=True).first()
    numbers = _revision_numbers(deployment) if revisions else {}
    return {
        "step": step,
        "seconds": seconds,
        "revisions": sorted(revisions),
        # The charts' legend says "r<number>", as the page does everywhere.
        "revision_numbers": {str(r): numbers.get(r) for r in sorted(revisions)},
        "buckets_ms": list(LATENCY_BUCKETS_MS),
        "since": first.isoformat() if first else None,
        "points": out,
    }


def _revision_numbers(deployment: Deployment) -> dict[int, int]:
    """Revision primary key -> its number ("r3" on the page) for ``deployment``."""
    from apps.deployments.models import Revision

    rows = Revision.objects.for_team(deployment.team_id).filter(deployment=deployment)
    return dict(rows.values_list("pk", "number"))


def recent_requests(deployment: Deployment) -> list[dict[str, Any]]:
    """The last requests' lines (method, path, status, ms, revision (its primary key),
    revision_number (what the page shows as "r<number>"), time as ISO 8601), newest first,
    over every process that flushed them in the last day."""
    processes = cache.get(_log_processes_key(deployment.pk)) or []
    found = cache.get_many([_log_key(deployment.pk, p) for p in processes])
    merged = sorted(
        (line for kept in found.values() for line in kept), key=lambda line: -line["time"]
    )[:LOG_LINES]
    # The gateway counts by primary key (its routes know no numbers); people read numbers.
    numbers = _revision_numbers(deployment) if merged else {}
    return [
        {
            **line,
            "revision_number": numbers.get(line["revision"]),
            "time": datetime.fromtimestamp(line["time"], tz=UTC).isoformat(),
        }
        for line in merged
    ]
