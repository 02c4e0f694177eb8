"""Autoscaling on requests in flight per replica (up at once, down only after the
stabilisation window), scale to zero after the idle time, the wake for a held request,
pause and resume (billing's spend cap), stop all (delete), the crash-loop limit, and the
beat that runs the controller. On the fake runtime (Celery eager: a replica asked for is
ready within the call); the gateway's in-flight counts are set by the test."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.utils import timezone

from apps.deployments import controller, metrics
from apps.deployments.models import Deployment, Replica, Revision
from apps.deployments.routing import deployment_generation
from apps.deployments.tasks import deployment_scale
from tests.deployments.control_helpers import (
    in_flight_window,
    kinds,
    make_deployment,
    reconcile,
    replicas_of,
    traffic,
)

pytestmark = pytest.mark.django_db(transaction=True)

S = Replica.Status
LIVE = (S.PLACING, S.STARTING, S.LOADING, S.READY)


def revision_of(deployment: Deployment) -> Revision:
    return Revision.objects.for_team(deployment.team_id).get(deployment=deployment, number=1)


def age(revision: Revision, seconds: float) -> None:
    """The current count was last needed ``seconds`` ago."""
    Revision.objects.for_team(revision.team_id).filter(pk=revision.pk).update(
        scaled_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_scales_up_at_once_on_in_flight_per_replica(acme, alice, host, gateway_calls):
    deployment = make_deployment(acme, alice, min_replicas=1, max_replicas=4, target_in_flight=4)
    revision = revision_of(deployment)
    gateway_calls.flights[deployment.pk] = {revision.pk: 9}  # ceil(9 / 4) = 3

    deployment = reconcile(deployment)

    revision.refresh_from_db()
    assert revision.replicas_wanted == 3
    assert len(replicas_of(deployment, S.READY)) == 3
    assert "scaled_up" in kinds(deployment)
    # Never past max.
    gateway_calls.flights[deployment.pk] = {revision.pk: 100}
    reconcile(deployment)
    assert len(replicas_of(deployment, S.READY)) == 4


def test_scales_down_only_after_the_window(acme, alice, host, gateway_calls, settings):
    settings.LATTICE_DEPLOYMENT_SCALE_DOWN_AFTER = 60
    deployment = make_deployment(acme, alice, min_replicas=1, max_replicas=4, target_in_flight=2)
    revision = revision_of(deployment)
    gateway_calls.flights[deployment.pk] = {revision.pk: 8}
    reconcile(deployment)
    assert len(replicas_of(deployment, *LIVE)) == 4

    # The load falls: not at once (no flapping) ...
    gateway_calls.flights[deployment.pk] = {revision.pk: 1}
    reconcile(deployment)
    age(revision, 30)
    reconcile(deployment)
    assert len(replicas_of(deployment, *LIVE)) == 4
    # ... a burst within the window keeps the count needed ...
    gateway_calls.flights[deployment.pk] = {revision.pk: 8}
    reconcile(deployment)
    revision.refresh_from_db()
    assert revision.scaled_at is not None
    assert timezone.now() - revision.scaled_at < timedelta(seconds=5)
    # ... and only a whole window without need scales down, to what is needed.
    gateway_calls.flights[deployment.pk] = {revision.pk: 3}
    age(revision, 61)
    reconcile(deployment)
    revision.refresh_from_db()
    assert revision.replicas_wanted == 2
    live = replicas_of(deployment, *LIVE)
    assert len(live) == 2
    assert len(replicas_of(deployment, S.DRAINING, S.STOPPING, S.STOPPED)) == 2
    assert "scaled_down" in kinds(deployment)


def test_a_scaled_down_replica_stops_once_its_own_requests_finished(
    acme, alice, host, gateway_calls, settings
):
    """R8: in flight is counted per replica: the one scaled down stops once it is idle
    (after the gateway's flush could tell), while the others still serve requests, not
    after the whole drain time; one with a request of its own waits for it."""
    settings.LATTICE_DEPLOYMENT_DRAIN_SECONDS = 30
    settings.LATTICE_DEPLOYMENT_SCALE_DOWN_AFTER = 60
    deployment = make_deployment(acme, alice, min_replicas=1, max_replicas=3, target_in_flight=2)
    revision = revision_of(deployment)
    gateway_calls.flights[deployment.pk] = {revision.pk: 6}
    reconcile(deployment)
    assert len(replicas_of(deployment, S.READY)) == 3

    gateway_calls.flights[deployment.pk] = {revision.pk: 2}  # one replica's worth
    age(revision, 61)
    reconcile(deployment)
    draining = replicas_of(deployment, S.DRAINING)
    assert len(draining) == 2
    [serving] = replicas_of(deployment, S.READY)
    idle, busy = draining
    in_flight_window(revision, {serving.pk: 1, busy.pk: 1})
    Replica.objects.for_team(acme).filter(pk__in=[idle.pk, busy.pk]).update(
        progressed_at=timezone.now() - timedelta(seconds=metrics.IN_FLIGHT_SECONDS + 1)
    )

    reconcile(deployment)

    idle.refresh_from_db()
    busy.refresh_from_db()
    assert (idle.status, busy.status) == (S.STOPPED, S.DRAINING)
    in_flight_window(revision, {serving.pk: 1})
    reconcile(deployment)
    busy.refresh_from_db()
    assert busy.status == S.STOPPED


def test_scales_to_zero_after_the_idle_time_and_a_request_wakes_it(
    acme, alice, host, gateway_calls
):
    deployment = make_deployment(
        acme, alice, min_replicas=0, max_replicas=2, scale_to_zero_after=300
    )
    revision = revision_of(deployment)
    assert len(replicas_of(deployment, S.READY)) == 1  # a rollout starts one to prove it
    Deployment.objects.for_team(acme).filter(pk=deployment.pk).update(
        last_request_at=timezone.now() - timedelta(seconds=200)
    )
    Revision.objects.for_team(acme).filter(pk=revision.pk).update(
        ready_at=timezone.now() - timedelta(seconds=400),
        scaled_at=timezone.now() - timedelta(seconds=400),
    )
    deployment = reconcile(deployment)
    assert len(replicas_of(deployment, S.READY)) == 1  # 200 s idle < 300 s

    Deployment.objects.for_team(acme).filter(pk=deployment.pk).update(
        last_request_at=timezone.now() - timedelta(seconds=301)
    )
    deployment = reconcile(deployment)
    assert replicas_of(deployment, S.READY) == []
    assert deployment.status == Deployment.Status.SCALED_TO_ZERO
    assert traffic(deployment) == {revision.pk: 100}  # still its route: a request wakes it
    assert "scaled_to_zero" in kinds(deployment)
    # Stays at zero on its own.
    deployment = reconcile(deployment)
    assert replicas_of(deployment, *LIVE) == []

    controller.deployment_wake(deployment.pk)  # the gateway holds a request

    deployment.refresh_from_db()
    assert len(replicas_of(deployment, S.READY)) == 1
    assert deployment.status == Deployment.Status.READY
    assert "woken" in kinds(deployment)
    # A second wake at once queues nothing more and starts nothing more.
    controller.deployment_wake(deployment.pk)
    assert len(replicas_of(deployment, *LIVE)) == 1


def test_never_to_zero_without_an_idle_time(acme, alice, host, gateway_calls):
    deployment = make_deployment(acme, alice, min_replicas=0, scale_to_zero_after=None)
    revision = revision_of(deployment)
    Revision.objects.for_team(acme).filter(pk=revision.pk).update(
        ready_at=timezone.now() - timedelta(days=1), scaled_at=timezone.now() - timedelta(days=1)
    )
    reconcile(deployment)
    assert len(replicas_of(deployment, S.READY)) == 1


def test_pause_stops_every_replica_and_resume_starts_them(acme, alice, host, gateway_calls):
    deployment = make_deployment(acme, alice, min_replicas=2, max_replicas=2)
    assert len(replicas_of(deployment, S.READY)) == 2

    controller.deployment_pause(deployment, "The team's spend cap is reached.")

    deployment.refresh_from_db()
    assert deployment.status == Deployment.Status.PAUSED
    assert "spend cap" in deployment.status_message
    assert replicas_of(deployment, *LIVE) == []
    assert {r.exit_reason for r in replicas_of(deployment)} == {"paused"}
    # The beat leaves it paused.
    deployment = reconcile(deployment)
    assert replicas_of(deployment, *LIVE) == []
    assert deployment.status == Deployment.Status.PAUSED

    controller.deployment_resume(deployment)

    deployment.refresh_from_db()
    assert len(replicas_of(deployment, S.READY)) == 2
    assert deployment.status == Deployment.Status.READY
    assert [k for k in kinds(deployment) if k in ("paused", "resumed")] == ["paused", "resumed"]


def test_stop_all_stops_every_replica_and_clears_the_routes(acme, alice, host, gateway_calls):
    deployment = make_deployment(acme, alice, min_replicas=2, max_replicas=2)
    # What deployment_delete does first (apps.deployments.services), then it calls stop_all.
    Deployment.objects.for_team(acme).filter(pk=deployment.pk).update(
        deleted_at=timezone.now(), traffic={}, rollout=None
    )
    deployment.refresh_from_db()
    told = len(gateway_calls.routes_changed)

    controller.deployment_stop_all(deployment, "the deployment was deleted")

    assert replicas_of(deployment, *LIVE) == []
    assert traffic(deployment) == {}
    assert len(gateway_calls.routes_changed) > told  # the ready replicas left the routes
    assert kinds(deployment).count("stopped") == 1
    assert set(
        Revision.objects.for_team(acme)
        .filter(deployment=deployment)
        .values_list("status", flat=True)
    ) == {Revision.Status.RETIRED}
    # A later pass starts nothing, and says nothing again.
    reconcile(deployment)
    assert replicas_of(deployment, *LIVE) == []
    assert kinds(deployment).count("stopped") == 1


def test_a_crash_loop_stops_replacing(acme, alice, host, gateway_calls, settings):
    from apps.runtimes import select

    deployment = make_deployment(acme, alice)
    [replica] = replicas_of(deployment)
    settings.LATTICE_RUNTIME = "fake:crashes"
    select._runtime.cache_clear()
    from apps.runtimes.fake import FakeRuntime

    FakeRuntime._running[replica.workload]["exit"] = 1  # it dies
    for _ in range(6):
        from apps.deployments.replicas import replica_end

        for open_replica in replicas_of(deployment, *LIVE):
            replica_end(open_replica, status=S.FAILED, reason="failed", message="exited")
        reconcile(deployment)
    failed = replicas_of(deployment, S.FAILED)
    assert len(failed) == 3  # three tries, then no more
    assert "crash_loop" in kinds(deployment)


def test_the_beat_reconciles_every_deployment(acme, alice, host, gateway_calls):
    first = make_deployment(acme, alice, "One", min_replicas=1, max_replicas=3, target_in_flight=1)
    second = make_deployment(acme, alice, "Two")
    gateway_calls.flights[first.pk] = {revision_of(first).pk: 3}

    assert deployment_scale() >= 2

    assert len(replicas_of(first, S.READY)) == 3
    assert len(replicas_of(second, S.READY)) == 1
    schedule = django_settings.CELERY_BEAT_SCHEDULE["deployments-scale"]
    assert schedule["task"] == "deployments.scale"
    assert schedule["schedule"] == django_settings.LATTICE_DEPLOYMENT_SCALE_EVERY


def test_a_rollout_starts_as_many_as_serve_and_keeps_them_a_window(
    acme, alice, host, gateway_calls
):
    from tests.deployments.control_helpers import add_revision

    deployment = make_deployment(acme, alice, min_replicas=1, max_replicas=4, target_in_flight=1)
    r1 = revision_of(deployment)
    gateway_calls.flights[deployment.pk] = {r1.pk: 3}
    reconcile(deployment)
    r2 = add_revision(deployment, image="fake/server:2", min_replicas=1, max_replicas=4)

    deployment = reconcile(deployment)

    assert traffic(deployment) == {r2.pk: 100}
    assert len(replicas_of(deployment, S.READY, revision=r2)) == 3
    # The load left with r1: r2 keeps its three for the window, not one pass.
    gateway_calls.flights[deployment.pk] = {r2.pk: 0}
    reconcile(deployment)
    assert len(replicas_of(deployment, *LIVE, revision=r2)) == 3


def test_saves_of_fields_the_gateway_does_not_read_keep_its_routes(
    acme, alice, host, gateway_calls
):
    """R13: the controller's frequent saves (scaled_at each second under load, status
    messages, progress) do not make every web process reload the route and drop its
    decisions; a change the route reads (a replica leaving ready, traffic) still does."""
    deployment = make_deployment(acme, alice, min_replicas=1, max_replicas=4, target_in_flight=2)
    revision = revision_of(deployment)
    gateway_calls.flights[deployment.pk] = {revision.pk: 2}  # the current count still needed
    key = deployment_generation(deployment.pk)
    age(revision, 5)
    before = cache.get(key)
    assert before is not None

    reconcile(deployment)  # writes only the revision's scaled_at
    revision.refresh_from_db()
    assert revision.scaled_at is not None
    assert timezone.now() - revision.scaled_at < timedelta(seconds=5)
    deployment.status_message = "Serving r1 (checked)."
    deployment.save(update_fields=["status_message", "status", "updated_at"])
    [replica] = replicas_of(deployment, S.READY)
    replica.progressed_at = timezone.now()
    replica.save(update_fields=["progressed_at"])
    assert cache.get(key) == before

    replica.status = S.DRAINING
    replica.save(update_fields=["status", "status_message", "progressed_at"])
    drained = cache.get(key)
    assert drained != before
    deployment.traffic = {}
    deployment.save(update_fields=["traffic", "updated_at"])
    assert cache.get(key) not in (before, drained)
