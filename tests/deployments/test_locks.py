"""The controller's and the replica events' row locks do not deadlock (PostgreSQL).

A reconcile locks its deployment, then the deployment's replicas; an agent's event locks
its replica, then writes a DeploymentEvent, whose foreign key takes a KEY SHARE lock on the
deployment. With FOR UPDATE on the deployment the two waited on each other (the bench saw
PostgreSQL's "deadlock detected ... while locking tuple in deployments_replica"); the
deployment's and the replica's locks are FOR NO KEY UPDATE, which a foreign key's check
does not wait for, so the event commits and the reconcile goes on.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from apps.core.tenancy import team_scope
from apps.deployments import controller, replicas
from apps.deployments.models import DeploymentEvent, Replica
from tests.deployments.control_helpers import make_deployment

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_event_written_under_a_replica_lock_does_not_deadlock_a_reconcile(
    postgres, acme, alice, host, gateway_calls
):
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
