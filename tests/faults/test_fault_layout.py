"""The fault layout itself (tests/faults/layout.py): two hosts ready, a notebook runs on each
through the API. Its private servers' restarts and kills are the fault tests'
(tests/faults/test_control_faults.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.faults.layout import FaultLayout


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
