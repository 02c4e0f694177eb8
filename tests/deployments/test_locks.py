"""Lock order between an agent's event and a controller pass.

The controller's pass locks the deployment's row, then its replicas'; an agent's event
locks its replica's row, then writes rows that name the deployment (a DeploymentEvent),
whose foreign-key check at commit takes a KEY SHARE lock on the deployment's row. A plain
FOR UPDATE there blocks that check: the event waited for the pass, the pass for the
event's replica, and PostgreSQL killed one ("deadlock detected"; the replica's ready event
was lost and it stayed "loading"). The pass, and the services (a delete stops every
replica while it holds the deployment), lock FOR NO KEY UPDATE: neither changes the
deployment's key, and a row that only names the deployment may still be written.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from apps.core.tenancy import team_scope
from apps.deployments import controller, replicas, services
from apps.deployments.controller import _lock
from apps.deployments.events import deployment_event
from apps.deployments.models import Deployment, DeploymentEvent, Replica, Revision
from apps.deployments.replicas import lock_replica
from tests.deployments.control_helpers import make_deployment
from tests.factories import MachineTypeFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _service_lock(deployment: Deployment) -> Deployment | None:
    return services._locked(deployment.team, deployment)  # a change's, a delete's


def _pass_lock(deployment: Deployment) -> Deployment | None:
    return _lock(deployment.pk, deployment.team_id)


@pytest.mark.parametrize("locker", [_pass_lock, _service_lock], ids=["pass", "service"])
def test_an_event_on_a_replica_commits_while_its_deployment_is_held(acme, locker) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks are PostgreSQL's")
    machine_type = MachineTypeFactory.create()
    with team_scope(acme):
        deployment = Deployment.objects.create(team=acme, name="Iris", slug="iris")
        revision = Revision.objects.create(
            team=acme, deployment=deployment, number=1, machine_type=machine_type
        )
        replica = Replica.objects.create(
            team=acme,
            deployment=deployment,
            revision=revision,
            machine_type=machine_type,
            status=Replica.Status.LOADING,
            requested_at=timezone.now(),
        )
    pass_holds = threading.Event()
    release = threading.Event()
    committed = threading.Event()
    errors: list[BaseException] = []

    def controller_pass() -> None:
        try:
            with team_scope(acme), transaction.atomic():
                assert locker(deployment) is not None
                pass_holds.set()
                release.wait(10)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    def agent_event() -> None:
        try:
            pass_holds.wait(10)
            with team_scope(acme), transaction.atomic():
                locked = lock_replica(replica.pk, acme.pk)
                assert locked is not None
                deployment_event(locked.deployment, "replica_ready", "ready", replica=locked)
            committed.set()
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=controller_pass), threading.Thread(target=agent_event)]
    for thread in threads:
        thread.start()
    try:
        # The event's transaction ends while the pass still holds the deployment.
        assert committed.wait(5), "the event's commit waited for the controller's pass"
    finally:
        release.set()
        for thread in threads:
            thread.join(15)
    assert errors == []


def test_an_event_written_under_a_replica_lock_does_not_deadlock_a_reconcile(
    postgres, acme, alice, host, gateway_calls
):
    """The whole cycle: the event holds its replica, the reconcile then holds the deployment
    and asks for the replicas; the event's write must not wait for the reconcile."""
    deployment = make_deployment(acme, alice)
    replica = Replica.objects.for_team(acme).get(deployment=deployment)
    replica_locked, deployment_locked = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def event_side() -> None:
        try:
            with team_scope(acme.pk), transaction.atomic():
                replicas.lock_replica(replica.pk, acme.pk)
                replica_locked.set()
                deployment_locked.wait(10)
                DeploymentEvent.objects.for_team(acme).create(
                    team=acme,
                    deployment_id=deployment.pk,
                    replica_id=replica.pk,
                    kind="test",
                    message="written under the replica's lock",
                )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def reconcile_side() -> None:
        try:
            replica_locked.wait(10)
            with team_scope(acme.pk), transaction.atomic():
                locked = controller._lock(deployment.pk, acme.pk)
                assert locked is not None
                deployment_locked.set()
                controller._open_replicas(locked)  # waits for the event's commit
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=event_side), threading.Thread(target=reconcile_side)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert not errors, errors
    assert DeploymentEvent.objects.for_team(acme).filter(kind="test").count() == 1
