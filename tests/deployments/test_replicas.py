"""A replica's life as a workload of kind "dp", on the fake runtime with Celery eager: placed
through the machine queue, started by the agent, ready only when its health route answers,
found lost by the machines reconciler and replaced; its events through the inbox's path
(apps.machines.reports.workload_event)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.stream import stream_after
from apps.deployments.models import Deployment, Replica
from apps.deployments.replicas import replica_place, start_options
from apps.deployments.spec import replica_spec
from apps.machines.agent import agent_report
from apps.machines.models import Placement, PlacementRequest
from apps.machines.reports import workload_event
from apps.machines.tasks import reconcile as machines_reconcile
from apps.runtimes.fake import FakeRuntime
from tests.deployments.control_helpers import (
    add_revision,
    kinds,
    make_deployment,
    reconcile,
    replicas_of,
    traffic,
)
from tests.notebook_fixtures import make_host

pytestmark = pytest.mark.django_db(transaction=True)

S = Replica.Status


def placement_of(replica: Replica) -> Placement:
    assert replica.placement_id is not None
    return Placement.objects.get(pk=replica.placement_id)


def test_a_replica_is_placed_started_and_ready_through_the_agent(acme, alice, host, gateway_calls):
    deployment = make_deployment(acme, alice, env={"GREETING": "hi"})

    [replica] = replicas_of(deployment)
    assert replica.status == S.READY
    assert replica.host == host
    assert replica.started_at is not None
    assert replica.ready_at is not None
    assert replica.ready_at >= replica.started_at
    assert replica.endpoint.startswith("http://127.0.0.1:")
    placement = placement_of(replica)
    assert placement.workload == f"dp-{replica.pk}"
    assert placement.active
    # The workload runs with the revision's image, env, PORT and its labels.
    entry = FakeRuntime._running[replica.workload]
    assert entry["labels"]["lattice.kind"] == "deployment"
    assert entry["labels"]["lattice.deployment"] == str(deployment.pk)
    assert entry["labels"]["lattice.stream"] == deployment.stream
    assert entry["log"][0].startswith("starting fake/server:1")
    # It takes traffic only now, and the gateway was told.
    assert traffic(deployment) == {replica.revision_id: 100}
    assert deployment.pk in gateway_calls.routes_changed
    assert deployment.status == Deployment.Status.READY
    assert "rolled_out" in kinds(deployment)
    published = [m for m in stream_after(deployment.stream, 0) if m.get("type") == "replica"]
    assert [m["status"] for m in published][-1] == "ready"
    told = [m for m in stream_after(deployment.stream, 0) if m.get("type") == "event"]
    assert [m["kind"] for m in told][-1] == "rolled_out"
    assert told[-1]["message"] == "r1 takes all requests."


def test_the_spec_carries_env_secrets_port_and_the_agent_options(acme, alice, host, gateway_calls):
    from apps.core.crypto import seal_json

    deployment = make_deployment(
        acme,
        alice,
        env={"A": "1"},
        secret_env=seal_json({"TOKEN": "s3cret"}),
        secret_names=["TOKEN"],
        startup_timeout=45,
    )
    [replica] = replicas_of(deployment)
    spec = replica_spec(replica)
    assert spec.env == {"A": "1", "TOKEN": "s3cret", "PORT": "8080"}
    assert spec.port == 8080
    assert spec.vcpus == float(replica.machine_type.vcpus)
    options = start_options(replica)
    assert options == {"stream": deployment.stream, "ready_path": "/health", "ready_timeout": 45}


def test_a_builtin_revision_asks_the_agent_for_the_model_servers_own_ready(acme, alice, host):
    deployment = Deployment.objects.for_team(acme).create(team=acme, name="B", slug="b")
    revision = add_revision(deployment, serving="builtin", image="", health_path="")
    replica = Replica(team=acme, deployment=deployment, revision=revision)
    options = start_options(replica)
    assert options["health"] == "model-server"
    assert options["ready_path"] == "/health-check"


def test_only_its_host_speaks_for_a_replica(acme, alice, host, gateway_calls, held_agent):
    deployment = make_deployment(acme, alice)
    [replica] = replicas_of(deployment)
    assert replica.status == S.STARTING
    other = make_host(name="other")

    # Another host's word is not believed, whatever it says (the inbox's path).
    workload_event(other, replica.workload, "ready", {"endpoint": "http://127.0.0.1:40001"})
    replica.refresh_from_db()
    assert replica.status == S.STARTING
    # Its own host with an endpoint elsewhere: not believed either.
    held_agent.say(replica, "ready", endpoint="http://10.9.9.9:40001")
    replica.refresh_from_db()
    assert replica.status == S.STARTING
    assert traffic(deployment) == {}


def test_a_replica_waits_in_line_when_no_host_has_room(
    acme, alice, catalogue, fake_runtime, gateway_calls
):
    make_host(cpus=1, memory_gib=1)  # too small for cpu-small
    deployment = make_deployment(acme, alice)

    [replica] = replicas_of(deployment)
    assert replica.status == S.PLACING
    assert "Waiting for a free" in replica.status_message
    request = PlacementRequest.objects.get(workload=replica.workload)
    assert request.status == PlacementRequest.Status.WAITING
    assert deployment.status == Deployment.Status.DEPLOYING


def test_a_lost_replica_is_found_by_the_reconciler_and_replaced(
    acme, alice, host, gateway_calls, settings
):
    settings.LATTICE_RECONCILE_GRACE = 0
    deployment = make_deployment(acme, alice)
    [first] = replicas_of(deployment)
    # Its container vanishes; two reports without it and the machines reconciler gives up.
    FakeRuntime._running.pop(first.workload)
    for _ in range(2):
        agent_report(host.name)
        machines_reconcile()
    assert not placement_of(first).active

    reconcile(deployment)

    first.refresh_from_db()
    assert (first.status, first.exit_reason) == (S.LOST, "lost")
    assert first.ended_at is not None
    ready = replicas_of(deployment, S.READY)
    assert len(ready) == 1
    assert ready[0].pk != first.pk
    assert ready[0].revision_id == first.revision_id
    assert {"replica_lost"} <= set(kinds(deployment))
    assert traffic(deployment) == {first.revision_id: 100}


def test_a_failed_start_says_why_and_frees_its_machine(acme, alice, host, gateway_calls, settings):
    from apps.runtimes import select

    deployment = make_deployment(acme, alice)
    [good] = replicas_of(deployment)
    settings.LATTICE_RUNTIME = "fake:crashes"
    select._runtime.cache_clear()
    add_revision(deployment, image="fake/server:2")

    reconcile(deployment)

    [bad] = replicas_of(deployment, S.FAILED)
    assert "exited during start" in bad.status_message
    assert not placement_of(bad).active
    assert traffic(deployment) == {good.revision_id: 100}


def test_a_placement_made_after_the_replica_ended_is_given_back(
    acme, alice, host, gateway_calls, held_agent
):
    deployment = make_deployment(acme, alice)
    [replica] = replicas_of(deployment)
    from apps.deployments.replicas import replica_end

    Replica.objects.for_team(acme).filter(pk=replica.pk).update(placement=None)
    replica.refresh_from_db()
    replica_end(replica, status=S.STOPPED, reason="stopped")
    replica_place(replica)
    assert not Placement.objects.filter(workload=replica.workload, active=True).exists()


def test_a_start_its_host_never_got_is_sent_again(
    acme, alice, host, gateway_calls, held_agent, settings
):
    settings.LATTICE_NOTEBOOK_REDISPATCH_AFTER = 60
    deployment = make_deployment(acme, alice)
    [replica] = replicas_of(deployment)
    assert len(held_agent.starts) == 1
    reconcile(deployment)
    assert len(held_agent.starts) == 1  # not silent long enough
    Replica.objects.for_team(acme).filter(pk=replica.pk).update(
        progressed_at=timezone.now() - timedelta(seconds=61)
    )
    agent_report(host.name)  # the host does not run it

    reconcile(deployment)

    assert len(held_agent.starts) == 2
    assert held_agent.starts[1][1]["name"] == replica.workload
    replica.refresh_from_db()
    assert replica.start_attempts == 2
    assert "replica_redispatched" in kinds(deployment)


def test_the_message_says_what_serves_once_every_replica_is_back(acme, alice, host, gateway_calls):
    deployment = make_deployment(acme, alice, min_replicas=2, max_replicas=2)
    assert deployment.status_message == "Serving r1."
    [first, _] = replicas_of(deployment)
    Placement.objects.filter(pk=placement_of(first).pk).update(active=False, end_reason="lost")

    deployment = reconcile(deployment)  # lost, replaced at once (eager)

    assert deployment.status == Deployment.Status.READY
    assert deployment.status_message == "Serving r1."
    assert len(replicas_of(deployment, S.READY)) == 2


def test_ready_counts_only_on_the_port_reported_for_that_workload(
    acme, alice, host, gateway_calls, held_agent
):
    """Review R12: the host's workload address is not enough; the port must be the one the
    agent reported for this workload when it started (not another workload's on the host)."""
    deployment = make_deployment(acme, alice)
    [replica] = replicas_of(deployment)
    assert replica.host is not None
    address = replica.host.workload_address
    held_agent.say(replica, "started", state={"name": replica.workload, "port": 40001})

    held_agent.say(replica, "ready", endpoint=f"http://{address}:40002", state={"port": 40002})
    replica.refresh_from_db()
    assert replica.status == S.STARTING
    assert replica.endpoint == ""

    held_agent.say(replica, "ready", endpoint=f"http://{address}:40001", state={"port": 40001})
    replica.refresh_from_db()
    assert replica.status == S.READY
    assert replica.endpoint == f"http://{address}:40001"
