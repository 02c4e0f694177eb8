"""Review 19 (placement): defects found in the rewritten scheduler (apps.machines.scheduler).
Each test is xfail(strict): it passes only while the bug exists."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from apps.machines.models import Host
from apps.machines.scheduler import NoCapacityError, placement_create
from tests.machines.test_scheduler import machine, make_host


@pytest.fixture(autouse=True)
def _catalogue(catalogue):
    return catalogue


@pytest.mark.xfail(
    strict=True,
    reason="R6: _lock_one's wait path re-locks the host by pk without its room/status "
    "conditions and _fits does not check status: a host drained while its row was locked "
    "gets the placement",
)
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("status", [Host.Status.DRAINING, Host.Status.OFFLINE])
def test_a_host_drained_while_its_row_was_locked_takes_nothing_new(postgres, status):
    host = make_host("only")
    locked = threading.Event()

    def drain() -> None:
        # The admin's drain (or the reconciler marking it offline): the UPDATE holds the
        # row until it commits, a moment later.
        try:
            with transaction.atomic():
                Host.objects.filter(pk=host.pk).update(status=status)
                locked.set()
                threading.Event().wait(0.7)
        finally:
            connection.close()

    drainer = threading.Thread(target=drain)
    drainer.start()
    assert locked.wait(5)
    try:
        placement = placement_create(machine_type=machine("cpu-small"), workload="nb:1")
    except NoCapacityError:
        placement = None
    drainer.join(5)

    host.refresh_from_db()
    assert host.status == status
    assert placement is None, f"placed on a {placement.host.status} host"
