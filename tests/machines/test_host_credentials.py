"""An admin makes a host's credentials: a join token for its name and its own broker user.

They are shown once (the command prints them, the admin shows them in a message); rotating
replaces them, and deleting a host removes its broker user. The broker user is checked on
the real Redis: it reaches the inbox and nothing of the trusted tier.
"""

from __future__ import annotations

import io
import re
import uuid

import pytest
import redis
from django.core.management import CommandError, call_command
from django.urls import reverse

from apps.machines.broker import broker_user, host_broker_user_remove
from apps.machines.identity import new_key
from apps.machines.models import Host, HostJoinToken
from apps.machines.services import host_register
from config.celery import app as celery_app

pytestmark = pytest.mark.django_db


@pytest.fixture
def on_redis(redis_url, monkeypatch):
    """The trusted tier's broker is Redis (production), so hosts get broker users."""
    monkeypatch.setitem(celery_app.conf, "broker_url", redis_url)
    names: list[str] = []
    yield names
    for name in names:
        host_broker_user_remove(name)


def new_name(names: list[str]) -> str:
    name = f"cred-{uuid.uuid4().hex[:8]}"
    names.append(name)
    return name


def printed(name: str, *args: str) -> str:
    out = io.StringIO()
    if "--rotate" not in args and "--address" not in args:
        args = (*args, "--address", "127.0.0.1")  # these hosts run here, beside the tests
    call_command("create_join_token", "--host", name, *args, stdout=out)
    return out.getvalue()


def test_the_command_asks_where_a_remote_host_publishes_workloads(db):
    with pytest.raises(CommandError, match="Give --address"):
        call_command("create_join_token", "--host", "gpu-far", stdout=io.StringIO())

    assert not HostJoinToken.objects.filter(host_name="gpu-far").exists()


def broker_url_in(text: str) -> str:
    match = re.search(r"LATTICE_AGENT_BROKER_URL=(\S+)", text)
    assert match, text
    return match.group(1)


def test_the_command_prints_a_token_for_the_name_and_a_broker_url_that_reaches_only_the_inbox(
    on_redis, redis_url
):
    name = new_name(on_redis)
    marker = f"probe-{uuid.uuid4().hex}"

    text = printed(name, "--address", "10.0.0.9")

    token = HostJoinToken.objects.get(host_name=name)
    assert (token.workload_address, token.used_at) == ("10.0.0.9", None)
    assert re.search(r"join token: latjoin_\S+", text)
    agent = redis.Redis.from_url(broker_url_in(text))
    agent.lpush("inbox", marker)
    assert redis.Redis.from_url(redis_url).lrem("inbox", 1, marker) == 1
    with pytest.raises(redis.exceptions.NoPermissionError):
        agent.lrange("inbox", 0, -1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        agent.get(":1:anything")
    with pytest.raises(redis.exceptions.NoPermissionError):
        agent.lpush("control", "x")


def test_a_registered_name_gets_credentials_only_by_rotation(on_redis):
    name = new_name(on_redis)
    first = printed(name)
    host_register(
        name=name,
        join_token=re.search(r"latjoin_\S+", first).group(0),  # type: ignore[union-attr]
        key=new_key(),
        inventory={},
    )

    with pytest.raises(CommandError, match="already registered"):
        printed(name)
    printed(name, "--rotate")
    rotated = printed(name, "--rotate")  # again: only this one's token joins

    old = redis.Redis.from_url(broker_url_in(first))
    with pytest.raises(redis.exceptions.AuthenticationError):
        old.ping()
    assert redis.Redis.from_url(broker_url_in(rotated)).ping()
    assert Host.objects.get(name=name).signing_key == ""
    assert HostJoinToken.objects.filter(host_name=name, used_at__isnull=True).count() == 1
    token = re.search(r"latjoin_\S+", rotated).group(0)  # type: ignore[union-attr]
    key = new_key()
    assert host_register(name=name, join_token=token, key=key, inventory={}).signing_key == key


def test_on_the_embedded_default_there_is_no_broker_user(monkeypatch):
    monkeypatch.setitem(celery_app.conf, "broker_url", "memory://localhost/")

    text = printed("gpu-embedded")

    assert "latjoin_" in text
    assert "LATTICE_AGENT_BROKER_URL" not in text


def test_an_admin_adds_a_join_token_and_is_shown_the_credentials_once(admin_client, on_redis):
    name = new_name(on_redis)

    response = admin_client.post(
        reverse("admin:machines_hostjointoken_add"),
        {"host_name": name, "workload_address": "10.0.0.7", "note": "rack 2"},
        follow=True,
    )

    shown = " ".join(str(m) for m in response.context["messages"])
    assert "LATTICE_AGENT_BROKER_URL=redis://" in shown
    assert "latjoin_" in shown
    token = HostJoinToken.objects.get(host_name=name)
    assert (token.workload_address, token.note) == ("10.0.0.7", "rack 2")
    assert redis.Redis.from_url(broker_url_in(shown)).ping()


def test_the_admin_refuses_a_token_for_a_bad_or_taken_name(admin_client, on_redis):
    Host.objects.create(name="taken-host")
    url = reverse("admin:machines_hostjointoken_add")

    for name in ("taken-host", "gpu-*"):
        response = admin_client.post(url, {"host_name": name, "workload_address": "10.0.0.7"})
        assert response.status_code == 200  # the form again, with the reason
        assert response.context["adminform"].form.errors["host_name"]
    assert not HostJoinToken.objects.exists()


def test_deleting_a_host_in_the_admin_removes_its_broker_user(admin_client, on_redis, redis_url):
    name = new_name(on_redis)
    url = broker_url_in(printed(name))
    host = Host.objects.create(name=name)  # joined, and never ran anything

    admin_client.post(
        reverse("admin:machines_host_delete", args=[host.pk]), {"post": "yes"}, follow=True
    )

    assert not Host.objects.filter(name=name).exists()
    users = redis.Redis.from_url(redis_url).execute_command("ACL", "USERS")
    assert broker_user(name).encode() not in users
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(url).ping()


def test_broker_users_redis_lost_are_made_again_with_their_own_passwords(on_redis, redis_url):
    """A Redis restart without an ACL file forgets every ACL user (played here by deleting
    them, as the restart would): beat's pass makes them again from their kept SHA-256, so
    the agents' own URLs work again with the same rules; a removed host's user stays gone."""
    from apps.machines.broker import broker_users_restore
    from apps.machines.models import BrokerUser
    from apps.machines.tasks import broker_users

    kept, removed = new_name(on_redis), new_name(on_redis)
    url = broker_url_in(printed(kept))
    printed(removed)
    host_broker_user_remove(removed)
    trusted = redis.Redis.from_url(redis_url)
    trusted.execute_command("ACL", "DELUSER", broker_user(kept))
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis.from_url(url).ping()
    row = BrokerUser.objects.get(host_name=kept)
    assert url.count(row.password_sha256) == 0  # the hash, never the password itself

    assert broker_users() == [kept]

    agent = redis.Redis.from_url(url)
    assert agent.ping()
    marker = f"probe-{uuid.uuid4().hex}"
    agent.lpush("inbox", marker)
    assert trusted.lrem("inbox", 1, marker) == 1
    with pytest.raises(redis.exceptions.NoPermissionError):
        agent.get(":1:anything")
    users = trusted.execute_command("ACL", "USERS")
    assert broker_user(removed).encode() not in users
    assert not BrokerUser.objects.filter(host_name=removed).exists()
    assert broker_users_restore() == []  # nothing missing: nothing made
