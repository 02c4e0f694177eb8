"""Host faults on the fault layout (tests/faults/layout.py): an agent killed, a Docker engine
killed with its agent alive, and both killed at once (a machine that lost its power), each
injected while a notebook S is mid-start on host b and a notebook R has been running there
since before.

After each, within 30 s (the layout's intervals: reconcile every 1 s, a host offline after
15 s of silence, a start with no progress sent again after 5 s, agents report every 1 s:
tests/faults/layout.py INTERVALS; production's are longer) the system converges
(tests/faults/converge.py) and:

- agent killed (and started again at once, as compose's ``restart: unless-stopped`` would):
  R (a GPU notebook) keeps running, its container untouched, still billed; the restarted
  agent adopts its container; S (a GPU notebook too: host b's other GPU), whose start
  message the dead agent had taken (kombu without acks: lost with it), is sent again by the
  control plane's reconciler and runs (or fails cleanly);
- host b powered off (agent and engine at once), then back: the host goes offline, R's
  session ends lost at its last heartbeat and is billed until then only, host b's GPUs
  leave the ledger (no active allocation on an offline host), S is failed or ended cleanly
  (no container anywhere), a restart of R lands on host a with its files as of its last
  snapshot, and when host b comes back its stale containers are removed (fenced) and
  nothing it ran is started again;
- host b's engine killed (dockerd, containerd, its containers) under a live agent-b and
  started again a few seconds later, as a supervisor would: the agent's reports fail while
  its engine answers nothing (no heartbeat: it never says "no workloads"), too short a
  silence for the host to go offline; once the engine is back its reports show R's
  container exited, so R (a GPU notebook) ends lost as of the last report that saw it
  running, billed until then, its GPU let go, its dead container removed as an orphan; S
  (the other GPU), whose start died with the engine, is sent again and runs (or fails
  cleanly); R started again has its files (its volume outlived the engine).

Each prints ``FAULT <fault> during <start|run>: converged in X.Ys`` (and appends it to the
file LATTICE_FAULT_REPORT names, if set).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.faults.converge import (
    RunClock,
    billed_vs_ran,
    container_of,
    problems,
    read_file,
    report,
    wait_converged,
    write_file,
)
from tests.faults.layout import CPU_TYPE

pytestmark = pytest.mark.usefixtures("fresh_layout")  # conftest.py: a clean slate

if TYPE_CHECKING:
    from collections.abc import Iterator

    import httpx

    from tests.faults.layout import FaultLayout

CONVERGE_WITHIN = 30.0
# Billed vs ran: the invoice counts whole seconds from started_at (when the agent said so)
# to ended_at (the last heartbeat for a lost one); the clock counts Docker's start and die.
# One report interval (1 s) plus the rounding of each end to its second.
BILLING_TOLERANCE = 3.0
MID_START = ("scheduled", "pulling", "starting")


@contextlib.contextmanager
def healthy_around(layout: FaultLayout) -> Iterator[None]:
    layout.healthy()
    try:
        yield
    finally:
        layout.healthy()


def latest_session(layout: FaultLayout, notebook: int) -> tuple[Any, ...]:
    """(id, status, host name, started_at, ended_at, exit_reason) of its latest session."""
    rows = layout.sql(
        "SELECT s.id, s.status, h.name, s.started_at, s.ended_at, s.exit_reason"
        " FROM notebooks_notebooksession s LEFT JOIN machines_host h ON h.id = s.host_id"
        " WHERE s.notebook_id = %s ORDER BY s.id DESC LIMIT 1",
        [notebook],
    )
    return rows[0] if rows else ()


def wait_mid_start(layout: FaultLayout, notebook: int, host: str, timeout: float = 60) -> str:
    """Until the notebook's session is placed on ``host`` and mid-start; its status."""
    deadline = time.monotonic() + timeout
    while True:
        row = latest_session(layout, notebook)
        if row and row[2] == host and row[1] in MID_START:
            return str(row[1])
        if time.monotonic() > deadline:
            pytest.fail(f"notebook {notebook} not mid-start on {host}: {row}")
        time.sleep(0.05)


def wait_for(what: str, check: Any, timeout: float, step: float = 0.25) -> float:
    """Seconds until ``check()`` is true; fails after ``timeout``."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            pytest.fail(f"{what}: not within {timeout:.0f}s", pytrace=False)
        time.sleep(step)
    return time.monotonic() - began


def settled(layout: FaultLayout, notebook: int) -> bool:
    """Its latest session is running, or ended."""
    row = latest_session(layout, notebook)
    return bool(row) and row[1] in {"running", "failed", "stopped", "lost", "cancelled"}


def wait_settled(layout: FaultLayout, notebook: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not settled(layout, notebook):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def reports_running(layout: FaultLayout, key: str, workload: str, *, since: Any) -> bool:
    """Host ``key``'s agent reported ``workload`` running in a report taken after ``since``
    (the database's time): a restarted agent found it again."""
    rows = layout.sql(
        "SELECT reported_at, reported_workloads FROM machines_host WHERE name = %s",
        [layout.hosts[key]],
    )
    if not rows or rows[0][0] is None or rows[0][0] <= since:
        return False
    return any(w.get("name") == workload and w.get("running") for w in rows[0][1] or [])


def events_of(api: httpx.Client, layout: FaultLayout, notebook: int) -> str:
    return str(api.get(f"/teams/{layout.team_slug}/notebooks/{notebook}/events/").text)[-3000:]


def assert_billed_as_ran(layout: FaultLayout, clock: RunClock, session: int) -> None:
    billed, ran = billed_vs_ran(layout, clock, session)
    assert abs(billed - ran) <= BILLING_TOLERANCE, (
        f"session {session}: billed {billed:.1f}s, ran {ran:.1f}s; {clock.events[-10:]}"
    )


def gpus_of(layout: FaultLayout, session: int) -> list[str]:
    rows = layout.sql(
        "SELECT g.uuid FROM machines_gpuallocation a JOIN machines_gpudevice g"
        " ON g.id = a.gpu_id JOIN notebooks_notebooksession s ON s.placement_id = a.placement_id"
        " WHERE s.id = %s AND a.active",
        [session],
    )
    return sorted(str(r[0]) for r in rows)


def stop(layout: FaultLayout, api: httpx.Client, *notebooks: int) -> None:
    for notebook in notebooks:
        api.post(f"/teams/{layout.team_slug}/notebooks/{notebook}/stop/")
    for notebook in notebooks:
        wait_for(
            f"notebook {notebook} stopped",
            lambda n=notebook: latest_session(layout, n)[1] not in {"running", *MID_START},
            60,
        )


# --- an agent killed ---------------------------------------------------------------------


def test_agent_killed_during_a_start_and_a_run(fault_layout: FaultLayout) -> None:
    layout = fault_layout
    b = layout.hosts["b"]
    with healthy_around(layout), layout.api() as api, RunClock(layout) as clock:
        # R: a GPU notebook running on host b since before, with a file.
        r = layout.start_gpu_notebook(api, name="R agent")
        r_session = latest_session(layout, r)[0]
        assert latest_session(layout, r)[2] == b
        r_gpus = gpus_of(layout, r_session)
        assert len(r_gpus) == 1
        write_file(layout, r, "r.txt", "written before the agent died")
        r_container = container_of(layout, r)
        assert r_container is not None
        r_container_id = r_container[1].id

        # S: the other GPU notebook, started now; agent-b killed while it is mid-start.
        s = layout.start_gpu_notebook(api, name="S agent", wait=False)
        status_at_kill = wait_mid_start(layout, s, b)
        layout.kill("agent-b")
        killed = time.monotonic()
        kill_time = layout.sql("SELECT now()")[0][0]
        at_kill = latest_session(layout, s)
        # Its supervisor starts it again at once (compose: restart unless-stopped).
        layout.start("agent-b", wait=False)

        # During the run: R's container never stopped, the agent back and reporting it.
        def r_consistent() -> bool:
            row = latest_session(layout, r)
            return (
                row[0] == r_session
                and row[1] == "running"
                and layout.host_statuses().get("b") == "ready"
                and container_of(layout, r) is not None
                and reports_running(layout, "b", f"nb-{r}-s{r_session}", since=kill_time)
            )

        wait_for("R consistent", r_consistent, CONVERGE_WITHIN)
        run_took = time.monotonic() - killed
        report(f"FAULT agent killed during run: converged in {run_took:.1f}s")
        # During the start: S settled and no problem left.
        if not wait_settled(layout, s, CONVERGE_WITHIN):
            pytest.fail(f"S not settled: {latest_session(layout, s)}; {events_of(api, layout, s)}")
        wait_converged(layout, CONVERGE_WITHIN)
        start_took = time.monotonic() - killed
        report(
            f"FAULT agent killed during start: converged in {start_took:.1f}s"
            f" (S was {status_at_kill} when killed; {at_kill[1]} after)"
        )
        # R: the same session and container, its GPU, its file; billed as it ran.
        where = container_of(layout, r)
        assert where is not None
        assert where[1].id == r_container_id, "R's container was replaced"
        assert gpus_of(layout, r_session) == r_gpus
        assert read_file(layout, r, "r.txt") == "written before the agent died"
        assert not [e for e in clock.events if e[2] == r_container_id and e[1] == "die"]
        assert_billed_as_ran(layout, clock, r_session)
        # S: running with the other GPU, or failed cleanly (no container, a message).
        s_row = latest_session(layout, s)
        if s_row[1] == "running":
            s_gpus = gpus_of(layout, s_row[0])
            assert len(s_gpus) == 1
            assert not set(s_gpus) & set(r_gpus)
            assert_billed_as_ran(layout, clock, s_row[0])
        else:
            assert container_of(layout, s) is None
            pytest.fail(f"S did not run: {s_row}; {events_of(api, layout, s)}")
        assert problems(layout) == []
        assert start_took <= CONVERGE_WITHIN, f"S settled in {start_took:.1f}s"
        assert run_took <= CONVERGE_WITHIN
        stop(layout, api, r, s)


# --- a host's power lost (agent and engine) -----------------------------------------------


def snapshot(layout: FaultLayout, api: httpx.Client, notebook: int, timeout: float = 120) -> int:
    made = api.post(f"/teams/{layout.team_slug}/notebooks/{notebook}/snapshots/")
    assert made.status_code == 202, made.text
    ident = made.json()["id"]

    def ready() -> bool:
        state = api.get(f"/teams/{layout.team_slug}/notebooks/{notebook}/snapshots/{ident}/")
        body = state.json()
        assert body["state"] != "failed", body
        return bool(body["state"] == "ready")

    wait_for(f"snapshot {ident} of notebook {notebook}", ready, timeout, step=0.5)
    return int(ident)


def stale_on_b(layout: FaultLayout) -> list[Any]:
    return list(
        layout.engines["b"].containers.list(
            all=True,
            sparse=True,
            filters={"label": f"lattice.installation={layout.installation}"},
        )
    )


def test_host_power_lost_during_a_start_and_a_run(fault_layout: FaultLayout) -> None:
    layout = fault_layout
    a, b = layout.hosts["a"], layout.hosts["b"]
    with healthy_around(layout), layout.api() as api, RunClock(layout) as clock:
        # R: a notebook of one core on host b with a file in a snapshot and one after it.
        r = layout.start_notebook(api, on="b", name="R power", machine_type=CPU_TYPE)
        r_session = latest_session(layout, r)[0]
        write_file(layout, r, "saved.txt", "in the snapshot")
        snapshot(layout, api, r)
        write_file(layout, r, "late.txt", "after the snapshot")

        # S: a GPU notebook (only host b has GPUs; b's other core): b loses its power
        # mid-start, with a GPU allocated to S.
        s = layout.start_gpu_notebook(api, name="S power", wait=False)
        status_at_kill = wait_mid_start(layout, s, b)
        s_session = latest_session(layout, s)[0]
        s_gpus = gpus_of(layout, s_session)
        last_heartbeat = layout.sql(
            "SELECT last_heartbeat_at FROM machines_host WHERE name = %s", [b]
        )[0][0]
        layout.kill("agent-b")
        layout.second_engine.kill()
        died_at = time.time()
        died = time.monotonic()
        clock.engine_killed("b", died_at)

        # During the run: host b offline, R lost at b's last heartbeat, no GPU of b held.
        def r_consistent() -> bool:
            return (
                layout.host_statuses().get("b") == "offline"
                and latest_session(layout, r)[1] == "lost"
                and not layout.sql(
                    "SELECT 1 FROM machines_gpuallocation a JOIN machines_gpudevice d"
                    " ON d.id = a.gpu_id JOIN machines_host h ON h.id = d.host_id"
                    " WHERE a.active AND h.name = %s",
                    [b],
                )
            )

        wait_for("R lost, host b offline", r_consistent, CONVERGE_WITHIN)
        run_took = time.monotonic() - died
        report(f"FAULT host power lost during run: converged in {run_took:.1f}s")
        if not wait_settled(layout, s, CONVERGE_WITHIN):
            pytest.fail(f"S not settled: {latest_session(layout, s)}; {events_of(api, layout, s)}")
        wait_converged(layout, CONVERGE_WITHIN)
        start_took = time.monotonic() - died
        report(
            f"FAULT host power lost during start: converged in {start_took:.1f}s"
            f" (S was {status_at_kill})"
        )

        assert_lost_at_heartbeat(layout, clock, [r_session], last_heartbeat, died_at)
        # S: ended, nowhere running, with a reason; the GPU it had been given let go.
        assert len(s_gpus) == 1, s_gpus
        assert gpus_of(layout, s_session) == []
        s_row = latest_session(layout, s)
        assert s_row[0] == s_session
        assert s_row[1] in {"failed", "lost", "cancelled"}, s_row
        assert s_row[4] is not None
        assert container_of(layout, s) is None
        assert_billed_as_ran(layout, clock, s_session)
        assert problems(layout) == []
        restart_on_a(layout, api, r)
        host_b_back(layout, clock)
        assert latest_session(layout, r)[2] == a
        assert start_took <= CONVERGE_WITHIN
        assert run_took <= CONVERGE_WITHIN
        stop(layout, api, r)


def assert_lost_at_heartbeat(
    layout: FaultLayout, clock: RunClock, sessions: list[int], before: Any, died_at: float
) -> None:
    """Each of ``sessions`` ended lost at host b's last heartbeat, billed until then only."""
    heartbeat = layout.sql(
        "SELECT last_heartbeat_at FROM machines_host WHERE name = %s", [layout.hosts["b"]]
    )[0][0]
    assert heartbeat >= before
    for session in sessions:
        ended, reason = layout.sql(
            "SELECT ended_at, exit_reason FROM notebooks_notebooksession WHERE id = %s",
            [session],
        )[0]
        assert reason == "lost"
        assert abs((ended - heartbeat).total_seconds()) <= 1.5, (ended, heartbeat)
        assert ended.timestamp() <= died_at + 0.5
        assert_billed_as_ran(layout, clock, session)


def restart_on_a(layout: FaultLayout, api: httpx.Client, r: int) -> None:
    """R started again: on host a, with its files as of its snapshot."""
    began = time.monotonic()
    restarted = api.post(f"/teams/{layout.team_slug}/notebooks/{r}/start/")
    assert restarted.status_code in {200, 202}, restarted.text
    layout.wait_notebook(api, r, "running", 120)
    assert latest_session(layout, r)[2] == layout.hosts["a"]
    assert read_file(layout, r, "saved.txt") == "in the snapshot"
    assert read_file(layout, r, "late.txt") is None
    print(f"R restarted on host a in {time.monotonic() - began:.1f}s")  # noqa: T201


def host_b_back(layout: FaultLayout, clock: RunClock) -> None:
    """Host b back (engine, then its agent): its stale containers removed (fenced), none
    started again; the machine's engine's docker0 untouched by its engine's start."""
    had_docker0 = Path("/sys/class/net/docker0").exists()
    began = time.monotonic()
    layout.second_engine.start()
    assert Path("/sys/class/net/docker0").exists() == had_docker0, "docker0 vanished"
    since = time.time()
    layout.start("agent-b", wait=False)
    layout.healthy()
    fenced = wait_for("host b's stale containers removed", lambda: not stale_on_b(layout), 30)
    took = time.monotonic() - began
    print(f"host b back and its stale containers removed in {took:.1f}s ({fenced:.1f}s)")  # noqa: T201
    b = layout.hosts["b"]
    starts = [e for e in clock.events if e[0] == b and e[1] == "start" and e[3] >= since]
    assert starts == [], f"host b started again what it ran: {starts}"
    wait_converged(layout, CONVERGE_WITHIN)


# --- a Docker engine killed (its agent alive) ----------------------------------------------

# How long host b's engine stays down before its supervisor (systemd's Restart=) starts it
# again: a few seconds, well under the fault layout's 15 s of silence before a host is
# offline, so the host is never judged gone: its live agent must tell what died.
ENGINE_DOWN_FOR = 3.0


def test_engine_killed_during_a_start_and_a_run(fault_layout: FaultLayout) -> None:
    """Host b's dockerd and its containers killed, agent-b left running; the engine started
    again after ENGINE_DOWN_FOR seconds. R (a GPU notebook, with a file in a snapshot and one
    after it) ends lost at the last report that saw it running, its GPU let go; S (the
    other GPU, mid-start) runs once the engine is back or fails cleanly; the dead containers
    are removed and nothing is started again but S."""
    layout = fault_layout
    b = layout.hosts["b"]
    with healthy_around(layout), layout.api() as api, RunClock(layout) as clock:
        r = layout.start_gpu_notebook(api, name="R engine")
        r_session = latest_session(layout, r)[0]
        assert latest_session(layout, r)[2] == b
        r_gpus = gpus_of(layout, r_session)
        assert len(r_gpus) == 1
        write_file(layout, r, "saved.txt", "in the snapshot")
        snapshot(layout, api, r)
        write_file(layout, r, "late.txt", "after the snapshot")
        r_container_id = container_of(layout, r)[1].id  # type: ignore[index]

        s = layout.start_gpu_notebook(api, name="S engine", wait=False)
        status_at_kill = wait_mid_start(layout, s, b)
        s_session = latest_session(layout, s)[0]
        layout.second_engine.kill()
        died_at = time.time()
        died = time.monotonic()
        clock.engine_killed("b", died_at)
        statuses: set[str] = set()
        while time.monotonic() - died < ENGINE_DOWN_FOR:
            statuses.add(layout.host_statuses().get("b", "?"))
            time.sleep(0.25)
        assert layout.running("agent-b")
        layout.second_engine.start()  # as its supervisor would; agent-b never stopped
        back = time.monotonic() - died

        # During the run: R lost (its container died), its GPU let go, its container gone.
        def r_consistent() -> bool:
            statuses.add(layout.host_statuses().get("b", "?"))
            row = latest_session(layout, r)
            return (
                row[0] == r_session
                and row[1] == "lost"
                and gpus_of(layout, r_session) == []
                and not any(c.id == r_container_id for c in stale_on_b(layout))
            )

        wait_for("R lost, its container removed", r_consistent, CONVERGE_WITHIN)
        run_took = time.monotonic() - died
        report(f"FAULT engine killed during run: converged in {run_took:.1f}s")
        if not wait_settled(layout, s, CONVERGE_WITHIN):
            pytest.fail(f"S not settled: {latest_session(layout, s)}; {events_of(api, layout, s)}")
        wait_converged(layout, CONVERGE_WITHIN)
        start_took = time.monotonic() - died
        s_row = latest_session(layout, s)
        report(
            f"FAULT engine killed during start: converged in {start_took:.1f}s"
            f" (S was {status_at_kill} when killed, {s_row[1]} after; engine back after"
            f" {back:.1f}s; host b {'/'.join(sorted(statuses))} meanwhile)"
        )
        assert layout.running("agent-b"), "agent-b died with its engine"
        assert_engine_fault_outcome(
            layout, clock, (r_session, r_container_id), (s, s_session), died_at
        )
        assert run_took <= CONVERGE_WITHIN
        assert start_took <= CONVERGE_WITHIN

        stop(layout, api, s)
        restart_on_b(layout, api, r)
        stop(layout, api, r)


def assert_engine_fault_outcome(
    layout: FaultLayout,
    clock: RunClock,
    r_run: tuple[int, str],
    s_start: tuple[int, int],
    died_at: float,
) -> None:
    """After host b's engine was killed at ``died_at`` and started again: R lost as of the
    last report that saw it run, billed until then only; S running (started again on the
    engine back) or failed cleanly; on host b nothing of the installation but S's running
    container; R's dead container never started again."""
    r_session, r_container_id = r_run
    s, s_session = s_start
    ended, reason = layout.sql(
        "SELECT ended_at, exit_reason FROM notebooks_notebooksession WHERE id = %s",
        [r_session],
    )[0]
    assert reason == "lost"
    assert ended.timestamp() <= died_at + 1.5, (ended, died_at)
    assert_billed_as_ran(layout, clock, r_session)
    s_row = latest_session(layout, s)
    assert s_row[0] == s_session
    if s_row[1] == "running":
        assert len(gpus_of(layout, s_session)) == 1
        assert container_of(layout, s) is not None
    else:
        assert s_row[1] in {"failed", "cancelled", "lost"}, s_row
        assert container_of(layout, s) is None
        assert s_row[4] is not None
    assert_billed_as_ran(layout, clock, s_session)
    left = [
        (c.attrs.get("Names"), c.attrs.get("State"))
        for c in stale_on_b(layout)
        if not (
            c.attrs.get("Labels", {}).get("lattice.notebook") == str(s)
            and c.attrs.get("State") == "running"
        )
    ]
    assert left == [], f"left on host b: {left}"
    b = layout.hosts["b"]
    restarted = [
        e
        for e in clock.events
        if e[0] == b and e[1] == "start" and e[2] == r_container_id and e[3] >= died_at
    ]
    assert restarted == [], f"R's dead container started again: {restarted}"
    assert problems(layout) == []


def restart_on_b(layout: FaultLayout, api: httpx.Client, r: int) -> None:
    """R started again (host b: the GPUs' only host): its files at least as of its snapshot
    (its volume outlived the engine's death, so the later one may be there too)."""
    layout.wait_gpus("b")
    restarted = api.post(f"/teams/{layout.team_slug}/notebooks/{r}/start/")
    assert restarted.status_code in {200, 202}, restarted.text
    layout.wait_notebook(api, r, "running", 120)
    assert read_file(layout, r, "saved.txt") == "in the snapshot"
    late = read_file(layout, r, "late.txt")
    print(f"R restarted on {latest_session(layout, r)[2]}; late.txt: {late!r}")  # noqa: T201
