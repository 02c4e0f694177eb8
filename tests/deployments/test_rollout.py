"""Rollouts whose readiness never lies: a new revision's replicas start, take no request
until their host says READY, then traffic shifts (a canary share first when asked), and
the old replicas drain, then stop. A revision that fails (SETUP_FAILED, a start timeout, a
canary's server errors) is rolled back with the reason kept and shown, the old one serving
on. On the fake runtime; a held agent lets the test speak for the host, step by step."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.core.tenancy import team_scope
from apps.deployments import controller, metrics
from apps.deployments.models import Deployment, DeploymentEvent, MetricWindow, Replica, Revision
from apps.machines.models import Placement, PlacementRequest
from apps.machines.queue import queue_advance_all
from apps.models.hooks import alias_moved
from apps.models.models import ModelAlias
from tests.deployments.control_helpers import (
    add_revision,
    in_flight_window,
    kinds,
    make_deployment,
    reconcile,
    replicas_of,
    traffic,
)
from tests.model_fixtures import make_model_version
from tests.notebook_fixtures import make_host

pytestmark = pytest.mark.django_db(transaction=True)

S = Replica.Status


def serving(acme, alice, held_agent, name="Churn", **spec):
    """A deployment whose r1 serves from one ready replica."""
    deployment = make_deployment(acme, alice, name, **spec)
    [replica] = replicas_of(deployment)
    held_agent.ready(replica)
    deployment = reconcile(deployment)
    r1 = replica.revision
    assert traffic(deployment) == {r1.pk: 100}
    return deployment, r1, replica


def test_traffic_shifts_only_once_the_new_replicas_say_ready(
    acme, alice, host, gateway_calls, held_agent
):
    deployment, r1, old = serving(acme, alice, held_agent)
    r2 = add_revision(deployment, image="fake/server:2", reason="changed")

    deployment = reconcile(deployment)
    [new] = replicas_of(deployment, revision=r2)
    assert deployment.rollout_id == r2.pk
    assert deployment.status == Deployment.Status.DEPLOYING
    # Started, loading the model: still no request for it.
    held_agent.say(new, "started", state={"name": new.workload, "port": 40001})
    held_agent.say(new, "progress", phase="loading")
    new.refresh_from_db()
    assert new.status == S.LOADING
    assert traffic(reconcile(deployment)) == {r1.pk: 100}
    old.refresh_from_db()
    assert old.status == S.READY

    routes_before = len(gateway_calls.routes_changed)
    held_agent.ready(new)  # its health route said READY

    deployment.refresh_from_db()
    assert traffic(deployment) == {r2.pk: 100}
    assert len(gateway_calls.routes_changed) > routes_before
    r1.refresh_from_db()
    r2.refresh_from_db()
    assert (r1.status, r2.status) == (Revision.Status.RETIRED, Revision.Status.SERVING)
    assert deployment.rollout_id is None
    assert deployment.status == Deployment.Status.READY
    # The old replica drains (in flight finishes), then is stopped.
    old.refresh_from_db()
    assert old.status in (S.DRAINING, S.STOPPING)
    assert [k for k in kinds(deployment) if k in ("rollout_started", "rolled_out", "retired")] == [
        "rollout_started",
        "rolled_out",
        "rollout_started",
        "rolled_out",
        "retired",
    ]


def test_a_draining_replica_waits_for_its_in_flight_requests(
    acme, alice, host, gateway_calls, held_agent, settings
):
    settings.LATTICE_DEPLOYMENT_DRAIN_SECONDS = 30
    deployment, r1, old = serving(acme, alice, held_agent)
    r2 = add_revision(deployment, image="fake/server:2")
    reconcile(deployment)
    gateway_calls.flights[deployment.pk] = {r1.pk: 3}
    in_flight_window(r1, {old.pk: 3})
    held_agent.ready(replicas_of(deployment, revision=r2)[0])
    Replica.objects.for_team(acme).filter(pk=old.pk).update(
        progressed_at=timezone.now() - timedelta(seconds=5)
    )

    reconcile(deployment)
    old.refresh_from_db()
    assert old.status == S.DRAINING  # 3 requests still in flight on it

    gateway_calls.flights[deployment.pk] = {r1.pk: 0, r2.pk: 1}
    in_flight_window(r1, {})
    reconcile(deployment)
    old.refresh_from_db()
    # Stopped through its host (the agent's stop runs; its "stopped" ends the replica).
    assert (old.status, old.exit_reason) == (S.STOPPED, "stopped")
    assert old.ended_at is not None


def test_a_replica_drained_a_moment_ago_waits_for_the_gateways_next_flush(
    acme, alice, host, gateway_calls, held_agent, settings
):
    """R8: a request the gateway sent just before the replica left its routes reaches the
    database with the next flush; until then "nothing in flight" is not yet known."""
    settings.LATTICE_DEPLOYMENT_DRAIN_SECONDS = 30
    deployment, _r1, old = serving(acme, alice, held_agent)
    r2 = add_revision(deployment, image="fake/server:2")
    reconcile(deployment)
    held_agent.ready(replicas_of(deployment, revision=r2)[0])
    drain_started = timezone.now() - timedelta(seconds=1.5)
    Replica.objects.for_team(acme).filter(pk=old.pk).update(progressed_at=drain_started)

    reconcile(deployment)
    old.refresh_from_db()
    assert old.status == S.DRAINING

    Replica.objects.for_team(acme).filter(pk=old.pk).update(
        progressed_at=timezone.now() - timedelta(seconds=metrics.IN_FLIGHT_SECONDS + 0.5)
    )
    reconcile(deployment)
    old.refresh_from_db()
    assert old.status == S.STOPPED


def test_the_gateway_flushes_in_flight_per_replica(acme, alice, host, gateway_calls):
    """R8: what the drain reads: the gateway's count of requests in flight to each replica,
    flushed with its windows, summed over processes, gone once they finish."""
    deployment = make_deployment(acme, alice, min_replicas=2, max_replicas=2)
    first, second = replicas_of(deployment)
    revision = first.revision
    ids = {"revision_id": revision.pk, "deployment_id": deployment.pk, "team_id": acme.pk}
    for replica in (first, first, second):
        metrics.counts.started(**ids, replica_id=replica.pk)
    before = int(time.time()) + 1
    metrics.flush(before)
    in_flight_window(revision, {second.pk: 4}, process="another-web-process")

    assert metrics.in_flight_replicas(deployment.pk) == {first.pk: 2, second.pk: 5}

    for replica in (first, first, second):
        metrics.counts.finished(
            revision_id=revision.pk,
            status=200,
            ms=5.0,
            method="POST",
            path="/predict",
            replica_id=replica.pk,
        )
    metrics.flush(before + 1)
    assert metrics.in_flight_replicas(deployment.pk) == {second.pk: 4}


def test_a_drain_ends_after_the_drain_seconds_whatever_is_in_flight(
    acme, alice, host, gateway_calls, held_agent, settings
):
    settings.LATTICE_DEPLOYMENT_DRAIN_SECONDS = 10
    deployment, r1, old = serving(acme, alice, held_agent)
    r2 = add_revision(deployment, image="fake/server:2")
    reconcile(deployment)
    gateway_calls.flights[deployment.pk] = {r1.pk: 2}
    held_agent.ready(replicas_of(deployment, revision=r2)[0])
    Replica.objects.for_team(acme).filter(pk=old.pk).update(
        progressed_at=timezone.now() - timedelta(seconds=11)
    )
    reconcile(deployment)
    old.refresh_from_db()
    assert old.status == S.STOPPED


def test_setup_failed_fails_the_revision_and_the_old_one_keeps_serving(
    acme, alice, host, gateway_calls, held_agent
):
    deployment, r1, old = serving(acme, alice, held_agent)
    r2 = add_revision(deployment, image="fake/server:2", reason="changed")
    reconcile(deployment)
    [new] = replicas_of(deployment, revision=r2)

    held_agent.say(new, "started", state={"name": new.workload, "port": 40001})
    held_agent.say(
        new,
        "failed",
        message="The model's setup() failed: ValueError: no weights",
        setup_failed=True,
        error="ValueError: no weights",
    )

    deployment.refresh_from_db()
    r2.refresh_from_db()
    new.refresh_from_db()
    assert r2.status == Revision.Status.FAILED
    assert "SETUP_FAILED" in r2.status_message
    assert "ValueError: no weights" in r2.status_message
    assert new.status == S.FAILED
    assert traffic(deployment) == {r1.pk: 100}
    old.refresh_from_db()
    assert old.status == S.READY
    assert deployment.rollout_id is None
    assert deployment.status == Deployment.Status.READY
    assert "r2 failed and was rolled back" in deployment.status_message
    assert "ValueError: no weights" in deployment.status_message
    event = DeploymentEvent.objects.for_team(acme).get(deployment=deployment, kind="rollout_failed")
    assert "r1 keeps serving" in event.message
    assert "ValueError: no weights" in event.message
    # Later passes leave it so: no new replica of the failed revision.
    reconcile(deployment)
    assert len(replicas_of(deployment, revision=r2)) == 1


def placed_ago(replica: Replica, *, seconds: int) -> None:
    """Make ``replica``'s placement (when it got room) ``seconds`` old."""
    replica.refresh_from_db()
    assert replica.placement_id is not None
    Placement.objects.filter(pk=replica.placement_id).update(
        created_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_a_start_past_its_timeout_fails_the_revision(acme, alice, host, gateway_calls, held_agent):
    deployment, r1, _old = serving(acme, alice, held_agent)
    r2 = add_revision(deployment, image="fake/server:2", startup_timeout=20)
    reconcile(deployment)
    [new] = replicas_of(deployment, revision=r2)
    # The timeout counts from when it was placed (room found), not from its wait in line.
    placed_ago(new, seconds=21)

    deployment = reconcile(deployment)

    r2.refresh_from_db()
    assert r2.status == Revision.Status.FAILED
    assert "startup timeout (20 s)" in r2.status_message
    assert traffic(deployment) == {r1.pk: 100}
    new.refresh_from_db()
    assert new.status == S.STOPPED  # its host was asked to stop it


def one_replica_host(name: str = "small") -> None:
    """A host with room for one cpu-small (2 vCPU, 8 GiB) replica, not two."""
    make_host(cpus=3, memory_gib=12, name=name)


def test_a_rollout_waiting_in_line_for_room_says_so_and_times_out_only_once_placed(
    acme, alice, fake_runtime, catalogue, gateway_calls, held_agent, client
):
    one_replica_host()
    deployment, r1, _old = serving(acme, alice, held_agent)
    r2 = add_revision(deployment, image="fake/server:2", startup_timeout=20)
    reconcile(deployment)
    [new] = replicas_of(deployment, revision=r2)
    assert new.status == S.PLACING  # no host has room beside r1's replica
    assert new.placement_id is None

    # Longer in line than its startup timeout: not failed, and it says it waits, and where.
    Replica.objects.for_team(acme).filter(pk=new.pk).update(
        requested_at=timezone.now() - timedelta(seconds=90)
    )
    deployment = reconcile(deployment)
    r2.refresh_from_db()
    assert r2.status == Revision.Status.STARTING
    assert r2.status_message.startswith("Waiting for room: no host has a free CPU small")
    assert "next in line; waited 1 min of at most 30 min" in r2.status_message
    assert deployment.status == Deployment.Status.DEPLOYING
    assert "Waiting for room" in deployment.status_message
    assert kinds(deployment).count("waiting_for_room") == 1
    assert traffic(deployment) == {r1.pk: 100}
    client.force_login(alice)
    page = client.get(f"/t/acme/deployments/{deployment.pk}/").content.decode()
    assert 'data-testid="revision-message">Waiting for room: no host has a free CPU small' in page
    assert "Rolling out r2: 0 of 1 ready. Waiting for room" in page

    # Room: a second host joins and the line moves; the timeout counts from here.
    one_replica_host("second")
    queue_advance_all()
    new.refresh_from_db()
    assert new.status == S.STARTING
    deployment = reconcile(deployment)
    r2.refresh_from_db()
    assert (r2.status, r2.status_message) == (Revision.Status.STARTING, "Starting its replicas.")
    assert "Waiting" not in deployment.status_message
    assert kinds(deployment).count("waiting_for_room") == 1

    placed_ago(new, seconds=21)
    deployment = reconcile(deployment)
    r2.refresh_from_db()
    assert r2.status == Revision.Status.FAILED
    assert "startup timeout (20 s)" in r2.status_message
    assert traffic(deployment) == {r1.pk: 100}


def test_a_rollout_that_waits_for_room_too_long_fails_and_gives_up_its_place(
    acme, alice, fake_runtime, catalogue, gateway_calls, held_agent, settings
):
    settings.LATTICE_DEPLOYMENT_ROOM_WAIT = 600
    one_replica_host()
    deployment, r1, old = serving(acme, alice, held_agent)
    r2 = add_revision(deployment, image="fake/server:2")
    reconcile(deployment)
    [new] = replicas_of(deployment, revision=r2)
    Replica.objects.for_team(acme).filter(pk=new.pk).update(
        requested_at=timezone.now() - timedelta(seconds=599)
    )
    deployment = reconcile(deployment)
    r2.refresh_from_db()
    assert r2.status == Revision.Status.STARTING
    assert "at most 10 min" in r2.status_message

    Replica.objects.for_team(acme).filter(pk=new.pk).update(
        requested_at=timezone.now() - timedelta(seconds=601)
    )
    deployment = reconcile(deployment)

    r2.refresh_from_db()
    assert r2.status == Revision.Status.FAILED
    assert r2.status_message.startswith("No room for its replicas within 10 min")
    assert "r2 failed and was rolled back: No room" in deployment.status_message
    event = DeploymentEvent.objects.for_team(acme).get(deployment=deployment, kind="rollout_failed")
    assert "r1 keeps serving" in event.message
    assert traffic(deployment) == {r1.pk: 100}
    new.refresh_from_db()
    assert new.status == S.STOPPED
    request = PlacementRequest.objects.get(workload=new.workload)
    assert request.status == PlacementRequest.Status.CANCELLED  # nobody waits behind it
    old.refresh_from_db()
    assert old.status == S.READY


def test_the_agents_timeout_on_the_real_agent_fails_the_revision(
    acme, alice, host, gateway_calls, settings
):
    from apps.runtimes import select

    deployment = make_deployment(acme, alice)
    r1 = replicas_of(deployment)[0].revision
    settings.LATTICE_RUNTIME = "fake:never-ready"
    select._runtime.cache_clear()
    r2 = add_revision(deployment, image="fake/server:2", startup_timeout=1)

    deployment = reconcile(deployment)

    r2.refresh_from_db()
    assert r2.status == Revision.Status.FAILED
    assert "did not become ready in time" in r2.status_message
    assert traffic(deployment) == {r1.pk: 100}


def test_a_first_revision_that_fails_leaves_the_deployment_failed(
    acme, alice, host, gateway_calls, held_agent
):
    deployment = make_deployment(acme, alice)
    [replica] = replicas_of(deployment)
    held_agent.say(replica, "failed", setup_failed=True, error="boom")
    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.FAILED
    assert "boom" in deployment.status_message
    assert traffic(deployment) == {}


def test_a_canary_takes_its_share_first_then_everything(
    acme, alice, host, gateway_calls, held_agent, settings
):
    settings.LATTICE_DEPLOYMENT_CANARY_SECONDS = 60
    deployment, r1, _old = serving(acme, alice, held_agent)
    r2 = add_revision(deployment, image="fake/server:2", canary_percent=10)
    reconcile(deployment)
    held_agent.ready(replicas_of(deployment, revision=r2)[0])

    assert traffic(deployment) == {r1.pk: 90, r2.pk: 10}
    deployment = reconcile(deployment)
    assert traffic(deployment) == {r1.pk: 90, r2.pk: 10}
    assert deployment.status == Deployment.Status.DEPLOYING
    # The watch passes with no server error: all of it.
    Revision.objects.for_team(acme).filter(pk=r2.pk).update(
        ready_at=timezone.now() - timedelta(seconds=61)
    )
    deployment = reconcile(deployment)
    assert traffic(deployment) == {r2.pk: 100}
    assert "canary" in kinds(deployment)


def test_a_canary_that_answers_server_errors_is_rolled_back(
    acme, alice, host, gateway_calls, held_agent
):
    deployment, r1, _old = serving(acme, alice, held_agent)
    r2 = add_revision(deployment, image="fake/server:2", canary_percent=25)
    reconcile(deployment)
    held_agent.ready(replicas_of(deployment, revision=r2)[0])
    assert traffic(deployment) == {r1.pk: 75, r2.pk: 25}
    MetricWindow.objects.for_team(acme).create(
        team=acme,
        deployment=deployment,
        revision=r2,
        second=timezone.now() + timedelta(seconds=1),
        process="web-1",
        requests=4,
        status_5xx=2,
    )

    deployment = reconcile(deployment)

    assert traffic(deployment) == {r1.pk: 100}
    r2.refresh_from_db()
    assert r2.status == Revision.Status.FAILED
    assert "2 server error(s)" in r2.status_message


def test_a_newer_revision_supersedes_one_still_rolling_out(
    acme, alice, host, gateway_calls, held_agent
):
    deployment, _r1, _old = serving(acme, alice, held_agent)
    r2 = add_revision(deployment, image="fake/server:2")
    reconcile(deployment)
    r3 = add_revision(deployment, image="fake/server:3")
    deployment = reconcile(deployment)

    r2.refresh_from_db()
    assert r2.status == Revision.Status.RETIRED
    assert "Superseded by r3" in r2.status_message
    assert deployment.rollout_id == r3.pk
    assert all(r.status == S.STOPPED for r in replicas_of(deployment, revision=r2))
    held_agent.ready(replicas_of(deployment, revision=r3)[0])
    assert traffic(deployment) == {r3.pk: 100}


def test_moving_a_followed_alias_rolls_out_its_version(
    acme, alice, host, gateway_calls, held_agent
):
    v1 = make_model_version(acme, alice, "Churn", {"predict.py": b"def predict(): return 1\n"})
    v2 = make_model_version(acme, alice, "Churn", {"predict.py": b"def predict(): return 2\n"})
    alias = ModelAlias.objects.for_team(acme).create(
        team=acme, model=v1.model, name="prod", version=v1
    )
    deployment, r1, _old = serving(acme, alice, held_agent, model_version=v1, follows_alias="prod")

    alias.version = v2
    alias.save()
    alias_moved(acme, alice, alias)  # what apps.models calls once the move commits

    r2 = Revision.objects.for_team(acme).get(deployment=deployment, number=2)
    assert r2.model_version_id == v2.pk
    assert r2.follows_alias == "prod"
    assert r2.reason == f"alias moved to v{v2.number}"
    assert (r2.image, r2.machine_type_id) == (r1.image, r1.machine_type_id)
    held_agent.ready(replicas_of(deployment, revision=r2)[0])
    assert traffic(deployment) == {r2.pk: 100}
    # A deployment pinned to v1 (no alias) is not moved.
    pinned, *_ = serving(acme, alice, held_agent, name="Pinned", model_version=v1)
    alias_moved(acme, alice, alias)
    assert Revision.objects.for_team(acme).filter(deployment=pinned).count() == 1


def test_an_alias_move_during_a_change_takes_the_next_revision_number(
    acme, alice, host, gateway_calls, held_agent
):
    """R10: the alias follow locks the deployment as the services do, so a change holding
    that lock (its new revision not yet committed) is waited for, not raced: no unique
    violation in the alias move's on-commit hook, and both revisions kept."""
    v1 = make_model_version(acme, alice, "Churn", {"predict.py": b"def predict(): return 1\n"})
    v2 = make_model_version(acme, alice, "Churn", {"predict.py": b"def predict(): return 2\n"})
    alias = ModelAlias.objects.for_team(acme).create(
        team=acme, model=v1.model, name="prod", version=v1
    )
    deployment, r1, _old = serving(acme, alice, held_agent, model_version=v1, follows_alias="prod")
    locked, failures = threading.Event(), []

    def change() -> None:  # what deployment_change does, in another connection
        try:
            with team_scope(acme.pk), transaction.atomic():
                Deployment.objects.for_team(acme).select_for_update().get(pk=deployment.pk)
                controller.revision_copy(r1, reason="changed")
                locked.set()
                time.sleep(0.5)
        except Exception as exc:  # reported to the test
            failures.append(exc)
        finally:
            locked.set()
            connection.close()

    changer = threading.Thread(target=change)
    changer.start()
    assert locked.wait(10)
    alias.version = v2
    alias.save()
    alias_moved(acme, alice, alias)
    changer.join(10)

    assert failures == []
    numbers = dict(
        Revision.objects.for_team(acme)
        .filter(deployment=deployment)
        .values_list("number", "reason")
    )
    assert numbers == {1: r1.reason, 2: "changed", 3: f"alias moved to v{v2.number}"}


def test_reconcile_is_idempotent(acme, alice, host, gateway_calls, held_agent):
    deployment, _r1, _old = serving(acme, alice, held_agent)
    events = len(kinds(deployment))
    for _ in range(3):
        controller.deployment_reconcile(deployment)
    assert len(replicas_of(deployment)) == 1
    assert len(kinds(deployment)) == events
