"""The team scope in the other interfaces: websocket consumers and Celery tasks."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.urls import path

from apps.core.consumers import TeamConsumer
from apps.core.tenancy import team_task
from apps.teams.models import Membership
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
