"""Review of issue 20's control-plane fixes (the fault suite's findings): what a stolen host
or a race could make of them, each now held.

- A host whose report makes every reconciler pass fail (labels that are no mapping) must not
  keep every other host from going offline: its malformed workloads are dropped, one host's
  failure does not end the pass, and a pass counts as the control plane being there when it
  begins, not only when it ends (apps/machines/hearing.py).
- Beat's restore of the hosts' broker users never makes a revoked host's user again, nor an
  old password after a rotation (apps/machines/broker.py: each user is made holding its row).
- A host cannot date a notebook's start before its placement: the wait in the line is never
  billed (apps/notebooks/lifecycle/events.py ``_started_at``).
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from apps.machines import broker, tasks
from apps.machines.models import BrokerUser, Host
from tests.factories import HostFactory


@pytest.mark.django_db
@pytest.mark.parametrize("labels", [None, {"lattice.kind": 3}, {}])
def test_a_hosts_malformed_report_does_not_keep_other_hosts_from_going_offline(
    settings, monkeypatch, labels
):
    from apps.machines.inbox import _on_report

    settings.LATTICE_HOST_OFFLINE_AFTER = 90
    t0 = timezone.now()
    clock = [t0]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    cache.clear()
    stolen = HostFactory.create(name="stolen-a", last_heartbeat_at=t0)
    victim = HostFactory.create(name="silent-b", last_heartbeat_at=t0)  # then silent
    Host.objects.filter(pk__in=[stolen.pk, victim.pk]).update(reported_at=t0, reported_workloads=[])
    tasks.reconcile()

    for step in range(1, 21):  # 10 minutes of passes every 30 s
        clock[0] = t0 + timedelta(seconds=30 * step)
        body = {
            "workloads": [{"name": "nb-x", "labels": labels}],
            "collected_at": clock[0].timestamp(),
            "inventory": {},
        }
        _on_report(Host.objects.get(pk=stolen.pk), body)
        Host.objects.filter(pk=stolen.pk).update(last_heartbeat_at=clock[0])
        tasks.reconcile()  # never raises

    victim.refresh_from_db()
    assert victim.status == Host.Status.OFFLINE


def test_a_pass_that_fails_still_counts_as_the_control_plane_being_there(settings, monkeypatch):
    """A pass that raises (here: in its first step) still marks when it began: the next pass
    does not take the gap for the control plane's absence, so no deaf period opens."""
    from apps.machines import hearing

    cache.clear()
    t0 = timezone.now()
    hearing.pass_began(t0)
    for step in range(1, 10):
        hearing.pass_began(t0 + timedelta(seconds=30 * step))  # each then fails: no "ended"
    assert cache.get(hearing.HEARING_SINCE_KEY) is None
    assert hearing.may_judge_silence(t0 + timedelta(seconds=300))


class FakeRedis:
    """Redis's ACL commands as the broker module sends them (a fake for the races only; the
    real Redis is tested in test_host_credentials.py)."""

    users: dict[str, str] = {}
    hooks: dict[Any, Any] = {}

    def execute_command(self, *args: Any) -> Any:
        if args[0] == "CLIENT":
            return 0
        op = args[1]
        if op == "LIST":
            return [f"user {u} on #{h} ~host.x".encode() for u, h in sorted(self.users.items())]
        if op == "SETUSER":
            hook = self.hooks.pop(("SETUSER", threading.current_thread().name), None)
            if hook:
                hook()
            for rule in args[3:]:
                if rule.startswith("#"):
                    self.users[args[2]] = rule[1:]
                elif rule.startswith(">"):
                    self.users[args[2]] = hashlib.sha256(rule[1:].encode()).hexdigest()
            return b"OK"
        if op == "DELUSER":
            self.users.pop(args[2], None)
            hook = self.hooks.pop("DELUSER", None)
            if hook:
                hook()
            return 1
        raise AssertionError(args)

    def acl_getuser(self, user: str) -> dict[str, Any] | None:
        return {"passwords": [self.users[user]]} if user in self.users else None

    def close(self) -> None:
        pass


@pytest.fixture
def fake_redis(monkeypatch):
    FakeRedis.users = {}
    FakeRedis.hooks = {}
    monkeypatch.setattr(broker, "_trusted_url", lambda: "redis://fake/0")
    monkeypatch.setattr(broker, "_client", lambda _url: FakeRedis())
    return FakeRedis


def _in_thread(work: Any, name: str) -> threading.Thread:
    def run() -> None:
        try:
            work()
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_restore_during_a_revoke_does_not_make_the_revoked_user_again(fake_redis):
    from apps.machines.services import host_revoke

    host = HostFactory.create(name="revoked-r")
    broker.host_broker_user_set(host.name)
    user = broker.broker_user(host.name)
    threads: list[threading.Thread] = []
    # Beat's pass between the revoke's DELUSER and its commit: it waits for the row.
    fake_redis.hooks["DELUSER"] = lambda: threads.append(
        _in_thread(broker.broker_users_restore, "restorer")
    )
    host_revoke(host=host)
    threads[0].join(10)

    assert not threads[0].is_alive()
    assert user not in fake_redis.users
    assert not BrokerUser.objects.filter(host_name=host.name).exists()
    assert broker.broker_users_restore() == []


@pytest.mark.django_db(transaction=True)
def test_a_rotation_during_a_restore_ends_with_the_new_password(fake_redis):
    from apps.machines.services import host_rotate_credentials

    host = HostFactory.create(name="rotated-r", signing_key="k")
    broker.host_broker_user_set(host.name)
    user = broker.broker_user(host.name)
    fake_redis.users.clear()  # Redis restarted without an ACL file
    go, reached = threading.Event(), threading.Event()

    def pause() -> None:
        reached.set()
        go.wait(10)

    fake_redis.hooks[("SETUSER", "restorer")] = pause
    restorer = _in_thread(broker.broker_users_restore, "restorer")  # read the old row
    assert reached.wait(10)
    rotation = _in_thread(lambda: host_rotate_credentials(actor=None, host=host), "admin")
    time.sleep(0.5)  # the rotation waits for the row the restore holds
    go.set()
    restorer.join(10)
    rotation.join(10)

    new_hash = BrokerUser.objects.get(host_name=host.name).password_sha256
    assert fake_redis.users[user] == new_hash
    assert broker.broker_users_restore() == []


@pytest.mark.django_db
def test_a_user_redis_has_with_another_password_is_made_again_with_the_kept_one(fake_redis):
    host = HostFactory.create(name="wrong-r")
    broker.host_broker_user_set(host.name)
    user = broker.broker_user(host.name)
    kept = fake_redis.users[user]
    fake_redis.users[user] = "0" * 64

    assert broker.broker_users_restore() == [host.name]
    assert fake_redis.users[user] == kept


@pytest.mark.django_db(transaction=True)
def test_a_host_cannot_bill_the_wait_in_the_line(acme, alice, host, notebook):
    from apps.notebooks.lifecycle.events import on_workload_event
    from apps.notebooks.models import NotebookSession, Status
    from apps.notebooks.services import notebook_start

    session = notebook_start(team=acme, actor=alice, notebook=notebook)
    NotebookSession.objects.for_team(acme).filter(pk=session.pk).update(
        status=Status.SCHEDULED,
        started_at=None,
        ready_at=None,
        requested_at=timezone.now() - timedelta(hours=6),  # waited 6 h for a GPU
    )
    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)
    assert session.placement is not None
    placed = session.placement.created_at
    said = session.requested_at + timedelta(seconds=1)
    on_workload_event(host.name, session.workload, "started", {"started_at": said.timestamp()})

    started = NotebookSession.objects.for_team(acme).get(pk=session.pk).started_at
    assert started is not None
    assert started >= placed


def test_a_host_cannot_bill_a_job_attempts_wait_in_the_line() -> None:
    """As a notebook's: a job attempt's start said to be before its placement is not believed."""
    from types import SimpleNamespace

    from apps.jobs.runs import _started_moment

    now = timezone.now()
    placed = now - timedelta(seconds=30)
    attempt: Any = SimpleNamespace(
        requested_at=now - timedelta(seconds=90),  # 60 s in the line
        placement=SimpleNamespace(created_at=placed),
    )
    in_line = (now - timedelta(seconds=80)).timestamp()
    assert _started_moment(in_line, attempt) >= now - timedelta(seconds=5)
    after = (placed + timedelta(seconds=2)).timestamp()
    assert _started_moment(after, attempt).timestamp() == pytest.approx(after)
