"""The fault layout itself (tests/faults/layout.py): two hosts ready, each on its engine, as
the compose file's agent. Notebooks started through the API on each host, and the private
servers' restarts and kills, are the fault tests' (test_control_faults.py,
test_host_faults.py)."""

from __future__ import annotations

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
