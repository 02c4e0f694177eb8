"""Review 19 (placement): defects found in the rewritten scheduler (apps.machines.scheduler)
and the PostgreSQL pool (R7), kept as regression tests now that they are fixed."""

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


def test_log_followers_do_not_starve_the_web_process_pool(
    postgres, asgi_live_server, alice, notebook
):
    import time

    import httpx

    from apps.accounts.tokens import token_create
    from apps.notebooks.models import Notebook, Status

    Notebook.objects.unscoped().filter(pk=notebook.pk).update(status=Status.RUNNING)
    _, plaintext = token_create(user=alice, name="cli", scopes=["notebooks:read"])
    followers = 20  # DATABASE_POOL_MAX_SIZE's default
    statuses: list[int] = []
    logs = f"{asgi_live_server}/api/v1/teams/acme/notebooks/{notebook.pk}/logs/"

    def follow() -> None:
        headers = {"Authorization": f"Bearer {plaintext}"}
        try:
            with httpx.stream(
                "GET", f"{logs}?follow=1&timeout=12", headers=headers, timeout=60
            ) as response:
                statuses.append(response.status_code)
                for _ in response.iter_bytes():
                    pass
        except Exception:
            statuses.append(0)

    streaming = [threading.Thread(target=follow) for _ in range(followers)]
    for thread in streaming:
        thread.start()
    time.sleep(4)  # every follower is streaming now
    pool_stats = getattr(connection, "pool", None) and connection.pool.get_stats()  # type: ignore[attr-defined]
    took: list[float] = []
    errors: list[str] = []

    def other_request() -> None:
        # Any other request of the same process (another team's page, an agent report).
        started = time.monotonic()
        try:
            Host.objects.count()
        except Exception as exc:  # PoolTimeout: "couldn't get a connection after 10 s"
            errors.append(repr(exc))
        finally:
            took.append(time.monotonic() - started)
            connection.close()

    other = threading.Thread(target=other_request)
    other.start()
    other.join(20)
    for thread in streaming:
        thread.join(40)

    assert statuses.count(200) >= followers - 2, statuses  # the followers did stream
    assert errors == [], (took, errors, pool_stats)
    assert took[0] < 2, (took, pool_stats)
