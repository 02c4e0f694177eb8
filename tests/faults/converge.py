"""The fault suite's invariant checker: does what the control plane records match what runs?

``problems(layout)`` reads the layout's database (raw SQL through ``layout.sql``: the tables
of apps.notebooks and apps.machines) and each host's Docker engine (``layout.engines``), and
says, one readable line each, where they disagree:

- sessions: a running session with no running container of its notebook (label
  ``lattice.notebook``, the layout's installation) on its host's engine; a running container
  of a notebook with no live session for it on that host (a session starting or stopping,
  for less than ``transient_timeout``, may have one); a session in a passing state
  (scheduled, pulling, starting, stopping) for longer than ``transient_timeout``;
- GPUs: a GPU with two active allocations; an active allocation whose placement is no live
  session's (nor a warm pool's); an active allocation on an offline host; a running
  container whose device request's GPU UUIDs are not its session's allocations; a GPU UUID in
  two running containers.

An engine that does not answer (killed) runs nothing: its host's running sessions are then
problems, as they are for the product until it marks them lost.

``RunClock`` records, from Docker's events, when each container of the installation really
ran, and ``billed_vs_ran`` sets a session's billed seconds (as the invoice counts them:
apps.billing.usage) beside them. ``write_file``/``read_file`` put a file in a notebook's
volume and read it back, through its container.

It codes against ``Layout`` (a Protocol of what it uses), so the fault suite's layout
(tests/faults/layout.py) and the embedded two-host control plane (tests/faults/
test_converge.py) both serve.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

# Session states (apps.notebooks.models.Status), as the database holds them.
RUNNING = "running"
PASSING = ("scheduled", "pulling", "starting", "stopping")
ENDED = ("stopped", "failed", "lost")
# How long a session may stay in a passing state before that is a problem: a start on this
# box (two cores, a warm image) takes well under it; a fault test can ask for less.
TRANSIENT_TIMEOUT = 60.0
# Docker's events for a container's life: ``die`` is its end (a ``kill`` is a signal sent,
# which a process may outlive; an ``oom`` is followed by its ``die``).
EVENTS = ("start", "die", "kill", "oom")


class Layout(Protocol):
    """What the checker needs of a layout (tests/faults/layout.py's FaultLayout has more)."""

    # Read-only: a layout may have them as attributes or as properties (FaultLayout's).
    @property
    def installation(self) -> str: ...
    @property
    def hosts(self) -> dict[str, str]: ...  # {"a": host name, "b": host name}
    @property
    def engines(self) -> dict[str, Any]: ...  # {"a": docker client, "b": docker client}

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]: ...


@dataclass
class Running:
    """A running container of the installation on one host's engine."""

    host: str
    id: str
    name: str
    labels: dict[str, str]
    gpus: list[str] = field(default_factory=list)

    @property
    def notebook(self) -> int | None:
        value = self.labels.get("lattice.notebook")
        return int(value) if value and value.isdigit() else None

    @property
    def session(self) -> int | None:
        value = self.labels.get("lattice.session")
        return int(value) if value and value.isdigit() else None

    def __str__(self) -> str:
        return f"container {self.name} ({self.id[:12]}) on {self.host}"


def running_containers(layout: Layout) -> tuple[list[Running], list[str]]:
    """The installation's running containers on every engine, with their device requests'
    GPU UUIDs, and the hosts whose engine did not answer (they run nothing)."""
    found: list[Running] = []
    silent: list[str] = []
    for key, host in layout.hosts.items():
        client = layout.engines[key]
        try:
            listed = client.api.containers(
                filters={"label": f"lattice.installation={layout.installation}"}
            )
        except Exception:
            silent.append(host)
            continue
        for row in listed:
            attrs = {}
            with contextlib.suppress(Exception):  # removed between the list and its inspect
                attrs = client.api.inspect_container(row["Id"])
            if not attrs.get("State", {}).get("Running"):
                continue
            requests = attrs.get("HostConfig", {}).get("DeviceRequests") or []
            found.append(
                Running(
                    host=host,
                    id=attrs["Id"],
                    name=attrs.get("Name", "").lstrip("/"),
                    labels=dict(attrs.get("Config", {}).get("Labels") or {}),
                    gpus=[uid for r in requests for uid in (r.get("DeviceIDs") or [])],
                )
            )
    return found, silent


@dataclass
class _Session:
    id: int
    notebook: int
    status: str
    host: str | None
    placement: int | None
    progressed_at: datetime

    def __str__(self) -> str:
        return f"session {self.id} (notebook {self.notebook}, {self.status} on {self.host})"


def _sessions(layout: Layout) -> list[_Session]:
    rows = layout.sql(
        "SELECT s.id, s.notebook_id, s.status, h.name, s.placement_id, s.progressed_at "
        "FROM notebooks_notebooksession s LEFT JOIN machines_host h ON h.id = s.host_id "
        "WHERE s.status <> ALL(%s)",
        [list(ENDED)],
    )
    return [_Session(*row) for row in rows]


def _age(moment: datetime, now: datetime) -> float:
    return (now - moment).total_seconds()


def session_problems(
    layout: Layout,
    containers: list[Running],
    *,
    now: datetime,
    transient_timeout: float = TRANSIENT_TIMEOUT,
) -> list[str]:
    found: list[str] = []
    sessions = _sessions(layout)
    ours = set(layout.hosts.values())
    for session in sessions:
        age = _age(session.progressed_at, now)
        if session.status in PASSING and age > transient_timeout:
            found.append(f"{session} has been {session.status} for {age:.0f}s")
        if session.status != RUNNING:
            continue
        if session.host not in ours:
            found.append(f"{session} is on a host not in the layout")
            continue
        if not any(c.host == session.host and c.notebook == session.notebook for c in containers):
            found.append(f"{session} has no running container on {session.host}")
    may_run = {
        (s.notebook, s.host): s
        for s in sessions
        if s.status == RUNNING
        or (s.status in PASSING and _age(s.progressed_at, now) <= transient_timeout)
    }
    for container in containers:
        if container.notebook is None:
            continue  # a warm pool's container, say: no notebook's yet
        live = may_run.get((container.notebook, container.host))
        if live is None:
            found.append(
                f"{container} runs notebook {container.notebook} (session "
                f"{container.session}) with no live session for it on {container.host}"
            )
        elif container.session is not None and container.session != live.id:
            found.append(f"{container} runs session {container.session}, not the live {live}")
    return found


def gpu_problems(layout: Layout, containers: list[Running]) -> list[str]:
    found, held = _allocation_problems(layout)
    seen: dict[str, Running] = {}
    for container in containers:
        for uuid in container.gpus:
            if uuid in seen:
                found.append(f"GPU {uuid} is in two running containers: {seen[uuid]}, {container}")
            seen[uuid] = container
        if container.session is not None and set(container.gpus) != held.get(
            container.session, set()
        ):
            found.append(
                f"{container} has GPUs {sorted(container.gpus)}; its session "
                f"{container.session} holds {sorted(held.get(container.session, set()))}"
            )
    return found


def _allocation_problems(layout: Layout) -> tuple[list[str], dict[int, set[str]]]:
    """The ledger's problems, and each live session's GPUs."""
    found: list[str] = []
    for uuid, count in layout.sql(
        "SELECT g.uuid, COUNT(*) FROM machines_gpuallocation a "
        "JOIN machines_gpudevice g ON g.id = a.gpu_id WHERE a.active "
        "GROUP BY g.uuid HAVING COUNT(*) > 1"
    ):
        found.append(f"GPU {uuid} has {count} active allocations")
    allocations = layout.sql(
        "SELECT g.uuid, h.name, h.status, p.workload, p.active, s.id, s.status "
        "FROM machines_gpuallocation a "
        "JOIN machines_gpudevice g ON g.id = a.gpu_id "
        "JOIN machines_host h ON h.id = g.host_id "
        "JOIN machines_placement p ON p.id = a.placement_id "
        "LEFT JOIN notebooks_notebooksession s ON s.placement_id = p.id "
        "WHERE a.active"
    )
    held: dict[int, set[str]] = {}  # session id -> its GPUs
    for uuid, host, host_status, workload, placed, session, status in allocations:
        if host_status == "offline":
            found.append(f"GPU {uuid} is allocated (placement {workload}) on offline host {host}")
        if not placed:
            found.append(f"GPU {uuid} is allocated to ended placement {workload}")
        if session is None:
            if not workload.startswith("pool-"):  # a warm pool's (apps.machines.pool)
                found.append(f"GPU {uuid} is allocated to {workload}, which no session holds")
        elif status in ENDED:
            found.append(f"GPU {uuid} is allocated to session {session}, which is {status}")
        else:
            held.setdefault(session, set()).add(uuid)
    return found, held


def problems(
    layout: Layout, *, now: datetime | None = None, transient_timeout: float = TRANSIENT_TIMEOUT
) -> list[str]:
    """Every disagreement between the database and the engines; empty when converged."""
    now = now or _db_now(layout)
    containers, _silent = running_containers(layout)
    return [
        *session_problems(layout, containers, now=now, transient_timeout=transient_timeout),
        *gpu_problems(layout, containers),
    ]


def _db_now(layout: Layout) -> datetime:
    """The database's clock: the times it holds are its own (now() of its transactions)."""
    return layout.sql("SELECT now()")[0][0]


def wait_converged(
    layout: Layout,
    timeout: float = 30.0,
    *,
    step: float = 0.25,
    transient_timeout: float = TRANSIENT_TIMEOUT,
) -> float:
    """Seconds until ``problems(layout)`` is empty; fails with the last ones after
    ``timeout``."""
    import pytest

    began = time.monotonic()
    while True:
        found = problems(layout, transient_timeout=transient_timeout)
        took = time.monotonic() - began
        if not found:
            return took
        if took > timeout:
            pytest.fail(
                f"not converged within {timeout:.0f}s:\n  " + "\n  ".join(found), pytrace=False
            )
        time.sleep(step)


# --- billing -------------------------------------------------------------------------------


@dataclass
class _Life:
    host: str
    labels: dict[str, str]
    spans: list[list[float | None]] = field(default_factory=list)  # [start, end or None]


class RunClock:
    """When each container of the layout's installation really ran, from Docker's events on
    every engine (a thread each, from ``start()`` to ``stop()``): ``start`` opens a span,
    ``die`` closes it (``kill`` and ``oom`` are recorded in ``events``). Containers already
    running when it starts are opened at their State.StartedAt. An engine that is killed sends
    no ``die``: ``engine_killed(key, at)`` closes its open spans at ``at`` (the moment the
    test killed it, time.time()). A thread whose stream breaks asks again from its last
    event's time (the engine replays what it still has), waiting while the engine is down."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.lives: dict[str, _Life] = {}
        self.events: list[tuple[str, str, str, float]] = []  # (host, action, id, time)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._streams: dict[str, Any] = {}
        self.errors: list[str] = []  # each broken event stream, as it broke
        self._seen: set[tuple[str, str, str, float]] = set()

    def start(self) -> RunClock:
        for key in self.layout.hosts:
            self._seed(key)
            thread = threading.Thread(
                target=self._follow, args=(key,), name=f"runclock-{key}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for stream in list(self._streams.values()):
            with contextlib.suppress(Exception):
                stream.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> RunClock:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _seed(self, key: str) -> None:
        client = self.layout.engines[key]
        with contextlib.suppress(Exception):
            for row in client.api.containers(
                filters={"label": f"lattice.installation={self.layout.installation}"}
            ):
                with contextlib.suppress(Exception):
                    attrs = client.api.inspect_container(row["Id"])
                    began = _docker_time(attrs["State"]["StartedAt"])
                    self._record(
                        key, "start", attrs["Id"], began, attrs["Config"].get("Labels") or {}
                    )

    def _follow(self, key: str) -> None:
        since = time.time()
        while not self._stopping.is_set():
            try:
                client = self.layout.engines[key]
                stream = client.events(
                    since=int(since),
                    decode=True,
                    filters={
                        "type": "container",
                        "event": list(EVENTS),
                        "label": f"lattice.installation={self.layout.installation}",
                    },
                )
                self._streams[key] = stream
                for event in stream:
                    at = event.get("timeNano", 0) / 1e9 or float(event.get("time", 0))
                    since = max(since, at)
                    actor = event.get("Actor", {})
                    self._record(
                        key,
                        event.get("Action") or event.get("status", ""),
                        actor.get("ID") or event.get("id", ""),
                        at,
                        actor.get("Attributes") or {},
                    )
            except Exception as exc:  # the engine went away: ask again once it is back
                self.errors.append(f"{key}: {exc}")
            self._stopping.wait(0.5)

    def _record(
        self, key: str, action: str, container: str, at: float, labels: dict[str, str]
    ) -> None:
        host = self.layout.hosts[key]
        with self._lock:
            if (host, action, container, at) in self._seen:  # replayed after a reconnect
                return
            self._seen.add((host, action, container, at))
            self.events.append((host, action, container, at))
            life = self.lives.setdefault(container, _Life(host, dict(labels)))
            open_span = life.spans and life.spans[-1][1] is None
            if action == "start":
                if open_span:  # the seed and a replayed start of the same run
                    return
                life.spans.append([at, None])
            elif action == "die" and open_span:
                life.spans[-1][1] = at

    def engine_killed(self, key: str, at: float) -> None:
        """Engine ``key`` lost its power at ``at`` (time.time()): its containers ran until
        then."""
        host = self.layout.hosts[key]
        with self._lock:
            for life in self.lives.values():
                if life.host == host and life.spans and life.spans[-1][1] is None:
                    life.spans[-1][1] = at

    def ran(self, *, session: int, until: float | None = None) -> float:
        """Seconds the containers of session ``session`` ran (still running: until
        ``until``, default now)."""
        until = until or time.time()
        total = 0.0
        with self._lock:
            for life in self.lives.values():
                if life.labels.get("lattice.session") != str(session):
                    continue
                for began, ended in life.spans:
                    assert began is not None
                    total += max(0.0, (ended if ended is not None else until) - began)
        return total


def _docker_time(text: str) -> float:
    """Docker's RFC 3339 time with nanoseconds, as time.time() would have said."""
    head, _, rest = text.rstrip("Z").partition(".")
    fraction = float(f"0.{rest}") if rest else 0.0
    return datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp() + fraction


def billed_seconds(layout: Layout, session: int, *, now: datetime | None = None) -> int:
    """Session ``session``'s billed seconds as the invoice counts them (apps.billing.usage
    ``_pieces``: from ``started_at`` to ``ended_at``, or now while it has none, each cut to
    its whole second; nothing before it started)."""
    started, ended = layout.sql(
        "SELECT started_at, ended_at FROM notebooks_notebooksession WHERE id = %s", [session]
    )[0]
    if started is None:
        return 0
    finish = (ended or now or _db_now(layout)).replace(microsecond=0)
    return max(0, int((finish - started.replace(microsecond=0)).total_seconds()))


def billed_vs_ran(layout: Layout, clock: RunClock, session_id: int) -> tuple[float, float]:
    """(billed seconds, seconds its containers ran), at one moment: this machine's clock is
    the database's and the engines' (one box)."""
    now = datetime.now(UTC)
    return float(billed_seconds(layout, session_id, now=now)), clock.ran(
        session=session_id, until=now.timestamp()
    )


# --- files ---------------------------------------------------------------------------------


def container_of(layout: Layout, notebook: int) -> tuple[str, Any] | None:
    """(host key, container) of the notebook's running container, on any engine."""
    for key in layout.hosts:
        with contextlib.suppress(Exception):
            found = layout.engines[key].containers.list(
                filters={
                    "label": [
                        f"lattice.installation={layout.installation}",
                        f"lattice.notebook={notebook}",
                    ]
                }
            )
            if found:
                return key, found[0]
    return None


def write_file(layout: Layout, notebook: int, name: str, text: str) -> float:
    """``text`` written to /notebooks/``name`` in the notebook's volume, through its running
    container, as its user; the time (time.time()) it was on disk (synced)."""
    where = container_of(layout, notebook)
    assert where is not None, f"notebook {notebook} has no running container"
    _, container = where
    code, out = container.exec_run(
        ["sh", "-c", 'printf %s "$1" > "/notebooks/$2" && sync', "sh", text, name],
        user="1000:1000",
    )
    assert code == 0, out.decode(errors="replace")
    return time.time()


def read_file(layout: Layout, notebook: int, name: str) -> str | None:
    """/notebooks/``name`` of the notebook, through its running container; None if the file
    is not there."""
    where = container_of(layout, notebook)
    assert where is not None, f"notebook {notebook} has no running container"
    _, container = where
    code, out = container.exec_run(["cat", f"/notebooks/{name}"], user="1000:1000")
    return out.decode(errors="replace") if code == 0 else None


def report(line: str) -> None:
    """A fault test's figure (``FAULT <fault> during start|run: converged in X.Ys``): printed
    (shown with -s) and appended to the file LATTICE_FAULT_REPORT names, if set (.ci/run
    prints it at the end of the run)."""
    print(f"\n{line}")  # noqa: T201 - the closing note's figures
    path = os.environ.get("LATTICE_FAULT_REPORT")
    if path:
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(line + "\n")
