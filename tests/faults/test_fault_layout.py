"""The fault layout itself (tests/faults/layout.py): two hosts ready, a notebook runs on each
through the API, and its private servers restart. What the layout's processes do after a
server restart is shown (``-s``), not judged here: the fault tests judge it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.faults.layout import FaultLayout


def _observe(fault_layout: FaultLayout, seconds: float) -> dict[str, Any]:
    """The hosts' statuses and the processes' liveness, ``seconds`` after a fault."""
    deadline = time.monotonic() + seconds
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        statuses = fault_layout.host_statuses()
        if statuses == {"a": "ready", "b": "ready"} and time.monotonic() > deadline - 2:
            break
        time.sleep(1)
    return {
        "hosts": statuses,
        "running": {name: fault_layout.running(name) for name in fault_layout.services},
    }


def _log_lines(fault_layout: FaultLayout, since: dict[str, int], *words: str) -> dict[str, list]:
    found = {}
    for name in fault_layout.services:
        new = fault_layout.log(name)[since[name] :]
        lines = [line for line in new.splitlines() if any(w in line for w in words)]
        if lines:
            found[name] = lines[:3] + ([f"... {len(lines)} such lines"] if len(lines) > 3 else [])
    return found


def test_both_hosts_are_ready_each_on_its_engine(fault_layout: FaultLayout) -> None:
    fault_layout.healthy()

    assert fault_layout.host_statuses() == {"a": "ready", "b": "ready"}
    rows = dict(
        fault_layout.sql(
            "SELECT name, workload_address FROM machines_host WHERE name = ANY(%s)",
            [list(fault_layout.hosts.values())],
        )
    )
    engine = fault_layout.second_engine
    assert str(rows[fault_layout.hosts["b"]]) == engine.address
    assert str(rows[fault_layout.hosts["a"]]) == engine.main_address
    _, env = fault_layout.layout.spec("agent-b")
    assert env["DOCKER_HOST"] == engine.url
    assert env["LATTICE_INSTALLATION"] == fault_layout.installation
    assert fault_layout.layout.spec("agent")[0][:3] == fault_layout.layout.spec("agent-b")[0][:3]
    print(  # noqa: T201 - the start's cost, for the report
        "fault layout start:", {k: round(v, 1) for k, v in fault_layout.timings.items()}
    )


def test_a_notebook_started_through_the_api_runs_on_each_host(fault_layout: FaultLayout) -> None:
    fault_layout.healthy()
    ours = {"label": [f"lattice.installation={fault_layout.installation}"]}
    with fault_layout.api() as api:
        me = api.get("/me")
        assert me.status_code == 200, me.text
        assert me.json()["email"] == fault_layout.user_email

        began = time.monotonic()
        on_b = fault_layout.start_notebook(api, on="b", name="On b")
        took_b = time.monotonic() - began
        began = time.monotonic()
        on_a = fault_layout.start_notebook(api, on="a", name="On a")
        took_a = time.monotonic() - began

        assert fault_layout.notebook_host(on_b) == "b"
        assert fault_layout.notebook_host(on_a) == "a"
        for key, notebook in (("b", on_b), ("a", on_a)):
            containers = fault_layout.engines[key].containers.list(filters=ours)
            assert [c.labels.get("lattice.notebook") for c in containers] == [str(notebook)]
        print(f"notebook running: on b in {took_b:.1f}s, on a in {took_a:.1f}s")  # noqa: T201

        for notebook in (on_a, on_b):
            stopped = api.post(f"/teams/{fault_layout.team_slug}/notebooks/{notebook}/stop/")
            assert stopped.status_code in {200, 202}, stopped.text
        for notebook in (on_a, on_b):
            fault_layout.wait_notebook(api, notebook, "stopped", 120)
    for key in ("a", "b"):
        assert fault_layout.engines[key].containers.list(filters=ours) == []
    fault_layout.healthy()


def test_the_private_redis_restarts(fault_layout: FaultLayout) -> None:
    import redis

    fault_layout.healthy()
    client = redis.Redis.from_url(fault_layout.redis.url)
    users_before = sorted(u.decode() for u in client.execute_command("ACL", "USERS"))
    client.close()
    rules = fault_layout.broker_users()
    assert len(rules) == 2, rules
    since = {name: len(fault_layout.log(name)) for name in fault_layout.services}

    began = time.monotonic()
    fault_layout.redis.restart()
    restarted = time.monotonic() - began

    client = redis.Redis.from_url(fault_layout.redis.url)
    assert client.ping()
    users_after = sorted(u.decode() for u in client.execute_command("ACL", "USERS"))
    client.close()
    seen = _observe(fault_layout, 20)
    print(  # noqa: T201 - what the processes did, for the report
        f"\nredis restarted in {restarted:.1f}s; ACL users before {users_before}, after "
        f"{users_after}; 20 s later: {seen}; log lines: "
        f"{_log_lines(fault_layout, since, 'WRONGPASS', 'NOAUTH', 'invalid username', 'rror')}"
    )
    # The session goes on (the fault tests after this one need both hosts): the hosts'
    # users the restart lost are put back as they were, then the layout is whole again.
    began = time.monotonic()
    put_back = fault_layout.put_back_broker_users(rules)
    fault_layout.healthy()
    print(  # noqa: T201
        f"broker users put back by the test: {put_back}; whole again in "
        f"{time.monotonic() - began:.1f}s"
    )


def test_the_private_postgres_restarts(fault_layout: FaultLayout) -> None:
    fault_layout.healthy()
    since = {name: len(fault_layout.log(name)) for name in fault_layout.services}

    began = time.monotonic()
    fault_layout.postgres.restart()
    restarted = time.monotonic() - began

    assert fault_layout.sql("SELECT 1") == [(1,)]
    seen = _observe(fault_layout, 20)
    print(  # noqa: T201 - what the processes did, for the report
        f"\npostgres restarted in {restarted:.1f}s; 20 s later: {seen}; log lines: "
        f"{_log_lines(fault_layout, since, 'OperationalError', 'rror', 'terminat')}"
    )
    fault_layout.healthy()


def test_the_private_servers_come_back_after_a_kill(fault_layout: FaultLayout) -> None:
    import redis

    rules = fault_layout.broker_users()
    for server in (fault_layout.postgres, fault_layout.redis):
        server.kill()
        assert not server.running()
        server.start()
        assert server.running()
    assert fault_layout.sql("SELECT 1") == [(1,)]
    assert redis.Redis.from_url(fault_layout.redis.url).ping()
    fault_layout.put_back_broker_users(rules)  # see the Redis restart's test
    fault_layout.healthy()
