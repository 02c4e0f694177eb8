"""The team scope in the other interfaces: websocket consumers and Celery tasks."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.urls import path

from apps.teams.consumers import TeamConsumer
from apps.teams.models import Membership
from apps.teams.scope import team_task
from config.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)


class Probe(TeamConsumer):
    """Says which team it serves and how many members its scoped query sees."""

    async def team_connected(self):
        count = await database_sync_to_async(Membership.objects.count)()
        await self.send_json({"team": self.team.slug, "members": count})

    async def team_receive_json(self, content):
        count = await database_sync_to_async(Membership.objects.count)()
        await self.send_json({"echo": content, "members": count})


application = URLRouter([path("ws/teams/<slug:team_slug>/probe/", Probe.as_asgi())])


def session(user, slug, then=None):
    """Connect as ``user``; run ``then(communicator)`` while connected; all in one event loop."""

    async def run():
        communicator = WebsocketCommunicator(application, f"/ws/teams/{slug}/probe/")
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        if not connected:
            return connected, None, None
        first = await communicator.receive_json_from()
        rest = await then(communicator) if then else None
        await communicator.disconnect()
        return connected, first, rest

    return async_to_sync(run)()


def test_a_member_connects_inside_the_team_scope(acme, globex, bob):
    connected, first, _ = session(bob, "acme")

    assert connected
    assert first == {"team": "acme", "members": 2}


@pytest.mark.parametrize("who", ["charlie", "visitor"])
def test_an_outsider_or_visitor_is_refused_at_the_handshake(acme, globex, charlie, who):
    user = charlie if who == "charlie" else AnonymousUser()

    connected, _, _ = session(user, "acme")

    assert not connected


def test_a_member_removed_while_connected_is_cut_off(acme, bob):
    async def talk(communicator):
        await communicator.send_json_to({"n": 1})
        reply = await communicator.receive_json_from()
        await database_sync_to_async(
            Membership.objects.for_team(acme).filter(user=bob).delete,
        )()
        await communicator.send_json_to({"n": 2})
        closed = await communicator.receive_output()
        return reply, closed

    connected, _, (reply, closed) = session(bob, "acme", then=talk)

    assert connected
    assert reply == {"echo": {"n": 1}, "members": 2}
    assert closed == {"type": "websocket.close", "code": 4404}


def test_a_consumer_may_not_replace_connect():
    with pytest.raises(TypeError, match="connect"):

        class Sneaky(TeamConsumer):
            async def connect(self):
                await self.accept()


@celery_app.task(name="tests.count_members")
@team_task
def count_members(*, team):
    return team.slug, Membership.objects.count()


def test_a_team_task_runs_in_its_teams_scope(acme, globex):
    assert count_members.apply(kwargs={"team_id": globex.pk}).result == ("globex", 1)
    assert count_members.apply(kwargs={"team_id": acme.pk}).result == ("acme", 2)


def test_a_team_task_needs_its_team_id(acme):
    with pytest.raises(TypeError, match="team_id"):
        count_members.apply(kwargs={})


class OpenProbe(Probe):
    """Needs notebooks.open, which a viewer's role lacks."""

    permission = "notebooks.open"


class DeleteProbe(Probe):
    """Needs team.delete, which only an owner has."""

    permission = "team.delete"


revocable = URLRouter(
    [
        path("ws/teams/<slug:team_slug>/open/", OpenProbe.as_asgi()),
        path("ws/teams/<slug:team_slug>/delete/", DeleteProbe.as_asgi()),
    ]
)


def _member(team, user):
    return Membership.objects.for_team(team).get(user=user)


def _remove(acme, alice, bob):
    from apps.teams.services import member_remove

    member_remove(team=acme, actor=alice, member=_member(acme, bob))


def _leave(acme, alice, bob):
    from apps.teams.services import member_remove

    member_remove(team=acme, actor=bob, member=_member(acme, bob))


def _lower_to_viewer(acme, alice, bob):
    from apps.teams.services import member_change_role

    member_change_role(team=acme, actor=alice, member=_member(acme, bob), role="viewer")


def _delete_team(acme, alice, bob):
    from apps.teams.services import team_delete

    team_delete(team=acme, actor=alice, confirmation="acme")


def _transfer_away(acme, alice, bob):
    from apps.teams.services import team_transfer_ownership

    # alice, the owner, hands the team to bob: she is an admin now, without team.delete.
    team_transfer_ownership(team=acme, actor=alice, member=_member(acme, bob))


def _admin_of(user_id):
    """A superuser's client, and the admin's address for the account ``user_id``."""
    from django.test import Client

    from tests.factories import UserFactory

    staff = UserFactory.create(email="root@example.com", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(staff)
    return client, f"/admin/accounts/user/{user_id}/"


def _deactivate(acme, alice, bob):
    client, url = _admin_of(bob.pk)
    response = client.post(f"{url}change/", {"name": bob.name, "is_active": ""})
    assert response.status_code == 302, response.content
    bob.refresh_from_db()
    assert not bob.is_active


def _delete_account(acme, alice, bob):
    client, url = _admin_of(bob.pk)
    response = client.post(f"{url}delete/", {"post": "yes"})
    assert response.status_code == 302, response.content


@pytest.mark.parametrize(
    ("change", "who", "probe"),
    [
        (_remove, "bob", "open"),
        (_leave, "bob", "open"),
        (_lower_to_viewer, "bob", "open"),
        (_delete_team, "bob", "open"),
        (_transfer_away, "alice", "delete"),
        (_deactivate, "bob", "open"),
        (_delete_account, "bob", "open"),
    ],
    ids=["removed", "left", "lowered", "team-deleted", "transferred", "deactivated", "deleted"],
)
def test_a_change_that_takes_the_permission_closes_the_socket_within_a_second(
    acme, alice, bob, change, who, probe
):
    import time

    from asgiref.sync import sync_to_async

    from apps.core import stream

    user = alice if who == "alice" else bob

    async def run():
        communicator = WebsocketCommunicator(revocable, f"/ws/teams/acme/{probe}/")
        communicator.scope["user"] = user
        assert (await communicator.connect())[0]
        await communicator.receive_json_from()
        # The change commits as it returns (the admin's part, a login and a request, is slow).
        await sync_to_async(change)(acme, alice, bob)
        changed_at = time.monotonic()
        closed = await communicator.receive_output(timeout=1)
        waited = time.monotonic() - changed_at
        await communicator.disconnect()
        return closed, waited

    stream.reset_for_tests()
    try:
        closed, waited = async_to_sync(run)()
    finally:
        stream.reset_for_tests()

    assert closed == {"type": "websocket.close", "code": 4404}
    assert waited < 1.0


def test_a_lower_role_that_keeps_the_permission_keeps_the_socket(acme, alice, bob):
    from asgiref.sync import sync_to_async

    from apps.core import stream
    from apps.teams.services import member_change_role

    member_change_role(team=acme, actor=alice, member=_member(acme, bob), role="admin")

    async def run():
        communicator = WebsocketCommunicator(revocable, "/ws/teams/acme/open/")
        communicator.scope["user"] = bob
        assert (await communicator.connect())[0]
        await communicator.receive_json_from()
        member = await database_sync_to_async(_member)(acme, bob)
        await sync_to_async(member_change_role)(
            team=acme, actor=alice, member=member, role="member"
        )
        quiet = await communicator.receive_nothing(timeout=1)
        await communicator.send_json_to({"n": 1})
        reply = await communicator.receive_json_from()
        await communicator.disconnect()
        return quiet, reply

    stream.reset_for_tests()
    try:
        quiet, reply = async_to_sync(run)()
    finally:
        stream.reset_for_tests()

    assert quiet
    assert reply == {"echo": {"n": 1}, "members": 2}


@pytest.mark.parametrize(
    "method", ["access_changed", "access_still_held", "dispatch", "websocket_disconnect"]
)
def test_a_consumer_may_not_replace_the_revocation_hooks(method):
    async def skip(self, message):
        return None

    with pytest.raises(TypeError, match=method):
        type("Sneaky", (TeamConsumer,), {method: skip})


def _browser_session(user):
    """A signed-in browser (Django's test client) and the stored session it holds."""
    from importlib import import_module

    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    return client, import_module(settings.SESSION_ENGINE).SessionStore(key)


def _sign_out(client, other, bob):
    response = client.post("/accounts/logout/")
    assert response.status_code == 302, response.content


def _change_password_elsewhere(client, other, bob):
    from tests.factories import PASSWORD

    # From another of bob's sessions: that one stays signed in, the socket's goes stale.
    response = other.post(
        "/accounts/password/change/",
        {
            "oldpassword": PASSWORD,
            "password1": "a new one for bob 42",
            "password2": "a new one for bob 42",
        },
    )
    assert response.status_code == 302, response.content


def _socket_while(user, stored, then):
    """Connect ``user``'s socket opened with ``stored``; ``then(communicator)`` while open."""
    from apps.core import stream

    async def run():
        communicator = WebsocketCommunicator(revocable, "/ws/teams/acme/open/")
        communicator.scope["user"] = user
        communicator.scope["session"] = stored
        assert (await communicator.connect())[0]
        await communicator.receive_json_from()
        try:
            return await then(communicator)
        finally:
            await communicator.disconnect()

    stream.reset_for_tests()
    try:
        return async_to_sync(run)()
    finally:
        stream.reset_for_tests()


@pytest.mark.parametrize(
    "end", [_sign_out, _change_password_elsewhere], ids=["signed-out", "password-changed"]
)
def test_ending_the_browser_session_closes_its_socket_within_a_second(acme, alice, bob, end):
    import time

    from asgiref.sync import sync_to_async

    client, stored = _browser_session(bob)
    other, _ = _browser_session(bob)

    async def end_it(communicator):
        await sync_to_async(end)(client, other, bob)
        ended_at = time.monotonic()
        closed = await communicator.receive_output(timeout=1)
        return closed, time.monotonic() - ended_at

    closed, waited = _socket_while(bob, stored, end_it)

    assert closed == {"type": "websocket.close", "code": 4404}
    assert waited < 1.0


def test_another_of_the_users_sessions_signing_out_keeps_the_socket(acme, alice, bob):
    from asgiref.sync import sync_to_async

    _, stored = _browser_session(bob)
    other, _ = _browser_session(bob)

    async def sign_out_elsewhere(communicator):
        await sync_to_async(_sign_out)(other, None, bob)
        quiet = await communicator.receive_nothing(timeout=1)
        await communicator.send_json_to({"n": 1})
        return quiet, await communicator.receive_json_from()

    quiet, reply = _socket_while(bob, stored, sign_out_elsewhere)

    assert quiet
    assert reply["echo"] == {"n": 1}
