"""Two real hosts (tests/multihost.py): the machine's Docker engine and a second engine of the
test run's own, each with its agent process, and the control plane between them.

The stories: both hosts join and report their inventory; starts spread over both engines
(their containers really on each); a team's /storage written on one host is read on the other
(served from one place, LATTICE_SHARED_STORAGE). Then storage following its notebook (issue
20): a notebook's files reach the host it moves to when its host is drained; a host that dies
goes offline, its session is lost, a restart lands on the other host with the last
snapshot's files, and the dead host, brought back, has its stale container removed.

Each convergence is timed and printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pytest

from apps.machines.models import Host
from apps.notebooks import services
from apps.notebooks.models import Notebook, NotebookSession, Status, TeamNotebookSettings
from tests.multihost import wait_until
from tests.notebook_fixtures import make_notebook

if TYPE_CHECKING:
    from tests.multihost import Agent, TwoHosts

pytestmark = [pytest.mark.django_db(transaction=True)]

START_TIMEOUT = 240.0


def timed(label: str, since: float) -> float:
    took = time.monotonic() - since
    print(f"\n[two hosts] {label}: {took:.1f}s")  # noqa: T201 - the closing note's figures
    return took


def session_of(notebook: Notebook) -> NotebookSession | None:
    return (
        NotebookSession.objects.for_team(notebook.team_id)
        .filter(notebook=notebook)
        .order_by("-pk")
        .first()
    )


def wait_status(notebook: Notebook, *statuses: str, timeout: float = START_TIMEOUT) -> Any:
    """The notebook's newest session once it is in one of ``statuses``; fail with what it
    said when it does not get there."""
    session = wait_until(
        lambda: (s := session_of(notebook)) is not None and s.status in statuses and s, timeout
    )
    if not session:
        last = session_of(notebook)
        fresh = Notebook.objects.for_team(notebook.team_id).get(pk=notebook.pk)
        said = (last.status if last else None, fresh.status_message)
        pytest.fail(f"{notebook.name} not {statuses} within {timeout:.0f}s: {said}", pytrace=False)
    return session


def container_of(agent: Agent, notebook: Notebook) -> Any:
    """The notebook's running container on ``agent``'s engine, or None."""
    found = agent.client.containers.list(filters={"label": f"lattice.notebook={notebook.pk}"})
    return found[0] if found else None


def run_in(container: Any, script: str) -> str:
    """``script`` run by sh in the notebook's container, as its user (what a cell does)."""
    code, out = container.exec_run(["sh", "-c", script], user="1000:1000")
    text = out.decode(errors="replace")
    assert code == 0, text
    return text


def agent_of(hosts: TwoHosts, session: NotebookSession) -> Agent:
    return hosts.a if session.host and session.host.name == hosts.a.name else hosts.b


def start(acme: Any, alice: Any, notebook: Notebook) -> None:
    services.notebook_start(team=acme, actor=alice, notebook=notebook)


# --- two hosts join, starts spread, one /storage ------------------------------------------------


def test_both_hosts_join_and_report_their_inventory(two_hosts):
    # The session's first test joined them: real join tokens, used up, keys recorded.
    assert two_hosts.joined
    print(f"\n[two hosts] both joined and ready: {two_hosts.timings['join']:.1f}s")  # noqa: T201
    for agent in two_hosts.agents:
        host = Host.objects.get(name=agent.name)
        assert host.status == Host.Status.READY
        assert host.reported_at is not None
        assert host.last_heartbeat_at is not None
        assert host.workload_address == agent.address
        assert host.cpu_count
        assert host.cpu_count > 0
        assert host.memory_bytes
        assert host.memory_bytes > 0
        assert host.signing_key == (agent.folder / "host.key").read_text().strip()
    assert two_hosts.a.address != two_hosts.b.address


def test_starts_spread_over_both_engines(two_hosts, acme, alice):
    # Each host has room for one cpu-small (its cores, as it reported them): so N starts per
    # host, all running at once, are on both engines.
    per_host = min(Host.objects.get(name=a.name).cpu_count for a in two_hosts.agents) // 2
    assert per_host >= 1
    notebooks = [make_notebook(acme, alice, f"Spread {i}") for i in range(2 * per_host)]
    began = time.monotonic()
    for notebook in notebooks:
        start(acme, alice, notebook)
    sessions = [wait_status(nb, Status.RUNNING) for nb in notebooks]
    timed(f"{len(notebooks)} starts running on two hosts", began)

    on = {agent.name: 0 for agent in two_hosts.agents}
    for notebook, session in zip(notebooks, sessions, strict=True):
        agent = agent_of(two_hosts, session)
        on[agent.name] += 1
        container = container_of(agent, notebook)
        assert container is not None, f"{notebook.name}'s container is not on {agent.name}"
        other = two_hosts.b if agent is two_hosts.a else two_hosts.a
        assert container_of(other, notebook) is None
        assert session.endpoint.startswith(f"http://{agent.address}:")
    assert on == {agent.name: per_host for agent in two_hosts.agents}


def test_storage_written_on_one_host_is_read_on_the_other(two_hosts, acme, alice):
    first = make_notebook(acme, alice, "Writer")
    second = make_notebook(acme, alice, "Reader")
    start(acme, alice, first)
    start(acme, alice, second)
    one, other = wait_status(first, Status.RUNNING), wait_status(second, Status.RUNNING)
    writer, reader = agent_of(two_hosts, one), agent_of(two_hosts, other)
    assert writer is not reader, "both landed on one host: the test proves nothing"

    run_in(container_of(writer, first), "echo 'from host A' > /storage/shared.txt")
    began = time.monotonic()
    assert run_in(container_of(reader, second), "cat /storage/shared.txt") == "from host A\n"
    timed("a /storage file written on one host read on the other", began)
    # Served from one place: the folder both hosts mount, not a volume of either engine's.
    storage = TeamNotebookSettings.objects.for_team(acme).get().storage_volume
    volume = two_hosts.shared / storage
    assert (volume / "shared.txt").read_text() == "from host A\n"
    assert (volume / "shared.txt").stat().st_uid == 1000


def test_the_hosts_page_warns_when_storage_is_not_shared(two_hosts, settings, admin_client):
    settings.LATTICE_SHARED_STORAGE = ""
    page = admin_client.get("/admin/machines/host/")
    assert "LATTICE_SHARED_STORAGE is not set" in page.content.decode()

    settings.LATTICE_SHARED_STORAGE = str(two_hosts.shared)
    page = admin_client.get("/admin/machines/host/")
    assert "LATTICE_SHARED_STORAGE is not set" not in page.content.decode()


# --- storage follows its notebook (issue 20) ----------------------------------------------------


def admin_action(admin_client: Any, action: str, host: Host) -> None:
    """The hosts admin's action whose description starts with ``action``, on ``host``."""
    from django.contrib import admin

    model_admin = admin.site._registry[Host]
    names = [
        name
        for name in model_admin.actions or ()
        if str(getattr(getattr(model_admin, str(name)), "short_description", "")).startswith(action)
    ]
    assert names, f"the hosts admin has no action {action!r}"
    page = admin_client.post(
        "/admin/machines/host/", {"action": names[0], "_selected_action": [host.pk]}, follow=True
    )
    assert page.status_code == 200


def moved_session(notebook: Notebook, old: NotebookSession) -> Any:
    """The notebook's newest session once it is a new one, running."""
    return wait_until(
        lambda: (
            (s := session_of(notebook)) is not None
            and s.pk != old.pk
            and s.status == Status.RUNNING
            and s
        ),
        START_TIMEOUT,
    )


def test_a_drained_hosts_notebook_moves_with_its_files(two_hosts, acme, alice, admin_client):
    notebook = make_notebook(acme, alice, "Mover")
    start(acme, alice, notebook)
    session = wait_status(notebook, Status.RUNNING)
    source = agent_of(two_hosts, session)
    target = two_hosts.b if source is two_hosts.a else two_hosts.a
    run_in(container_of(source, notebook), "echo 'written before the move' > /notebooks/kept.txt")

    began = time.monotonic()
    admin_action(admin_client, "Drain", two_hosts.host(source))
    admin_action(admin_client, "Move notebooks now", two_hosts.host(source))
    moved = moved_session(notebook, session)
    assert moved, f"not moved: {session_of(notebook)}"
    timed("drain -> the notebook running on the other host with its files", began)
    assert moved.host.name == target.name
    assert container_of(source, notebook) is None
    assert run_in(container_of(target, notebook), "cat /notebooks/kept.txt") == (
        "written before the move\n"
    )


def snapshotted_on_b(two_hosts: TwoHosts, acme: Any, alice: Any, notebook: Notebook) -> Any:
    """``notebook`` running on host b (a drained meanwhile), with a file in a READY snapshot
    and one written after it. Its session."""
    from apps.machines.services import host_set_draining
    from apps.notebooks.snapshots import snapshot_latest, snapshot_take

    host_set_draining(host=two_hosts.host(two_hosts.a), draining=True)
    start(acme, alice, notebook)
    session = wait_status(notebook, Status.RUNNING)
    host_set_draining(host=two_hosts.host(two_hosts.a), draining=False)
    assert session.host.name == two_hosts.b.name
    run_in(container_of(two_hosts.b, notebook), "echo 'in the snapshot' > /notebooks/saved.txt")
    began = time.monotonic()
    taken = snapshot_take(notebook=notebook, reason="manual", session=session, actor=alice)
    assert taken is not None
    assert wait_until(lambda: snapshot_latest(notebook) is not None, 120), "no snapshot"
    timed("a snapshot of a running notebook on host b", began)
    run_in(container_of(two_hosts.b, notebook), "echo 'after it' > /notebooks/late.txt")
    return session


def reconciled(check: Any) -> Any:
    """``check`` after a pass of both reconcilers (what beat runs every few seconds)."""
    from apps.machines.tasks import reconcile
    from apps.notebooks.tasks import reconcile_task

    def once() -> Any:
        reconcile()
        reconcile_task()
        return check()

    return once


def test_a_dead_host_goes_offline_and_its_notebook_restarts_elsewhere_with_its_files(
    two_hosts, acme, alice, settings
):
    settings.LATTICE_HOST_OFFLINE_AFTER = 5
    settings.LATTICE_RECONCILE_GRACE = 2
    notebook = make_notebook(acme, alice, "Survivor")
    session = snapshotted_on_b(two_hosts, acme, alice, notebook)
    stale = container_of(two_hosts.b, notebook)

    # Power off host b: its agent, its engine and the notebook's processes, all at once.
    two_hosts.b.kill()
    last_heartbeat = Host.objects.get(name=two_hosts.b.name).last_heartbeat_at
    died = time.monotonic()
    two_hosts.engine.kill()
    offline = reconciled(
        lambda: Host.objects.get(name=two_hosts.b.name).status == Host.Status.OFFLINE
    )
    assert wait_until(offline, settings.LATTICE_HOST_OFFLINE_AFTER + 30, step=1)
    took = timed("a dead host offline", died)
    assert took <= settings.LATTICE_HOST_OFFLINE_AFTER + 10
    lost = NotebookSession.objects.for_team(acme).get(pk=session.pk)
    assert lost.status == Status.LOST
    assert last_heartbeat is not None
    assert lost.ended_at is not None
    assert abs((lost.ended_at - last_heartbeat).total_seconds()) <= 3

    began = time.monotonic()
    start(acme, alice, Notebook.objects.for_team(acme).get(pk=notebook.pk))
    again = wait_status(notebook, Status.RUNNING)
    timed("restart on the other host, files restored", began)
    assert again.host.name == two_hosts.a.name
    survivor = container_of(two_hosts.a, notebook)
    assert run_in(survivor, "cat /notebooks/saved.txt") == "in the snapshot\n"
    assert run_in(survivor, "test -e /notebooks/late.txt || echo absent") == "absent\n"

    # Host b comes back: its engine (the stale container, stopped, still there) and agent.
    began = time.monotonic()
    two_hosts.engine.start()
    assert two_hosts.b.client.containers.get(stale.id) is not None
    two_hosts.start_agent(two_hosts.b)
    two_hosts.wait_ready(two_hosts.b)
    timed("the dead host back and ready", began)
    began = time.monotonic()
    gone = reconciled(
        lambda: (
            not two_hosts.b.client.containers.list(
                all=True, sparse=True, filters={"label": f"lattice.notebook={notebook.pk}"}
            )
        )
    )
    assert wait_until(gone, 60, step=1), "the stale container is still on host b"
    timed("its stale container removed", began)
    assert container_of(two_hosts.a, notebook) is not None  # the one on host a untouched
