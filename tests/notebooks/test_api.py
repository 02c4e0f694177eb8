"""API v1 notebooks: make, list, change, start, stop, restart, delete; events and the live log.

Celery runs eagerly and start work is queued on commit, so a start through the
API has the notebook running (on the fake runtime) by the time it answers.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.accounts.tokens import token_create
from apps.core.stream import stream_last, stream_publish
from apps.notebooks import services
from apps.notebooks.models import Notebook, NotebookSession, Status, TeamNotebookSettings
from apps.teams.models import Membership, Role
from tests.factories import NotebookFactory, UserFactory, add_member
from tests.helpers import bearer, logs_shipped, make_token

pytestmark = pytest.mark.django_db(transaction=True)

BASE = "/api/v1/teams/acme/notebooks/"


def api_for(user, scopes=None) -> APIClient:
    return bearer(make_token(user, scopes)[1])


def url(notebook, action=""):
    return f"{BASE}{notebook.pk}/" + (f"{action}/" if action else "")


def ndjson(response: Any) -> list[dict[str, Any]]:
    """The lines of a streamed NDJSON response, read to its end."""
    return [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]


def assert_error(response, status, code=None):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) <= {"code", "message", "fields"}
    assert error["message"]
    if code:
        assert error["code"] == code
    return error


class TestCrud:
    def test_create_list_get_patch_delete(self, acme, alice, catalogue):
        api = api_for(alice)

        created = api.post(
            BASE,
            {"name": "Churn", "template": "scipy", "machine_type": "cpu-small"},
            format="json",
        )
        assert created.status_code == 201, created.content
        body = created.json()
        assert body["name"] == "Churn"
        assert body["machine_type"] == "cpu-small"
        assert body["status"] == "stopped"
        assert body["open_url"] is None
        assert body["session"] is None
        assert body["created_by"] == "alice@example.com"
        assert body["idle_timeout_minutes"] is None
        assert body["effective_idle_timeout_minutes"] == 60

        listed = api.get(BASE).json()
        assert set(listed) == {"next", "previous", "results"}
        assert [n["name"] for n in listed["results"]] == ["Churn"]
        assert listed["results"][0]["effective_idle_timeout_minutes"] == 60

        detail = url(Notebook(pk=body["id"]))
        changed = api.patch(
            detail,
            {"name": "Churn v2", "machine_type": "cpu-large", "idle_timeout_minutes": 0},
            format="json",
        )
        assert changed.status_code == 200, changed.content
        assert changed.json()["name"] == "Churn v2"
        assert changed.json()["machine_type"] == "cpu-large"
        assert changed.json()["effective_idle_timeout_minutes"] == 0
        back = api.patch(detail, {"idle_timeout_minutes": None}, format="json").json()
        assert back["idle_timeout_minutes"] is None
        assert back["effective_idle_timeout_minutes"] == 60
        assert api.get(detail).json()["name"] == "Churn v2"

        refused = api.delete(detail, {"confirmation": "Churn"}, format="json")
        assert assert_error(refused, 400)["fields"] == {
            "confirmation": ["Type the notebook's name, Churn v2, to delete it."]
        }
        assert api.delete(f"{detail}?confirmation=Churn%20v2").status_code == 204
        assert api.get(detail).status_code == 404
        assert api.get(BASE).json()["results"] == []

    def test_delete_takes_the_confirmation_in_the_body(self, acme, alice, notebook):
        api = api_for(alice)

        response = api.delete(url(notebook), {"confirmation": "Churn model"}, format="json")

        assert response.status_code == 204
        notebook.refresh_from_db()
        assert notebook.deleted_at is not None

    def test_duplicate_makes_a_stopped_copy(self, acme, alice, notebook):
        response = api_for(alice).post(url(notebook, "duplicate"), {"name": "Copy"}, format="json")

        assert response.status_code == 201, response.content
        assert response.json()["name"] == "Copy"
        assert response.json()["template"] == "scipy"
        taken = api_for(alice).post(url(notebook, "duplicate"), {"name": "Copy"}, format="json")
        assert "already has a notebook called Copy" in assert_error(taken, 400)["fields"]["name"][0]

    def test_bad_inputs_get_4xx_in_the_one_error_format(self, acme, alice, notebook, catalogue):
        api = api_for(alice)

        unknown = api.post(
            BASE, {"name": "X", "template": "scipy", "machine_type": "no-such"}, format="json"
        )
        assert "machine_type" in assert_error(unknown, 400, "invalid")["fields"]
        template = api.post(
            BASE, {"name": "X", "template": "cobol", "machine_type": "cpu-small"}, format="json"
        )
        assert "template" in assert_error(template, 400, "invalid")["fields"]
        image = api.post(
            BASE,
            {"name": "X", "template": "custom", "machine_type": "cpu-small", "custom_image": "A B"},
            format="json",
        )
        assert "custom_image" in assert_error(image, 400, "invalid")["fields"]
        taken = api.post(
            BASE,
            {"name": "Churn model", "template": "scipy", "machine_type": "cpu-small"},
            format="json",
        )
        assert "name" in assert_error(taken, 400, "invalid")["fields"]
        idle = api.patch(url(notebook), {"idle_timeout_minutes": -1}, format="json")
        assert "idle_timeout_minutes" in assert_error(idle, 400, "invalid")["fields"]
        assert (
            "machine_type"
            in assert_error(api.patch(url(notebook), {"machine_type": "nope"}, format="json"), 400)[
                "fields"
            ]
        )
        assert "confirmation" in assert_error(api.delete(url(notebook)), 400)["fields"]
        assert_error(api.get(f"{url(notebook, 'logs')}?after=-1"), 400, "invalid")
        assert_error(api.get(f"{url(notebook, 'logs')}?follow=1&timeout=601"), 400, "invalid")
        assert_error(api.get(f"{BASE}999999/"), 404, "not_found")
        assert_error(api.post(f"{BASE}999999/start/"), 404, "not_found")

    def test_listing_writes_nothing(self, acme, settings):
        # A read (a viewer's, even) shows the installation's default idle shutdown for a team
        # that never saved its notebook settings, and leaves no settings row behind.
        settings.LATTICE_DEFAULT_IDLE_MINUTES = 45
        NotebookFactory.create(team=acme)  # made straight in the database: no settings row
        viewer = UserFactory.create()
        add_member(acme, viewer, Role.VIEWER)

        response = api_for(viewer).get(BASE)

        assert response.status_code == 200
        assert response.json()["results"][0]["effective_idle_timeout_minutes"] == 45
        assert not TeamNotebookSettings.objects.for_team(acme).exists()

    def test_charlie_gets_404(self, acme, globex, charlie, notebook):
        api = api_for(charlie)

        for method, path in [
            ("get", BASE),
            ("get", url(notebook)),
            ("post", url(notebook, "start")),
            ("get", url(notebook, "logs")),
            ("get", url(notebook, "events")),
        ]:
            assert_error(getattr(api, method)(path), 404, "not_found")
        notebook.refresh_from_db()
        assert notebook.desired_state == "stopped"


class TestLifecycle:
    def test_start_runs_it_then_stop_stops_it(self, acme, alice, host, notebook):
        api = api_for(alice)

        started = api.post(url(notebook, "start"))

        assert started.status_code == 202, started.content
        body = started.json()
        assert body["status"] == "running"
        assert body["desired_state"] == "running"
        assert body["open_url"] == f"/nb/{notebook.pk}/"
        assert body["session"]["status"] == "running"
        assert body["session"]["host"] == host.name
        assert body["session"]["ready_at"] is not None
        assert body["session"]["ended_at"] is None
        listed = api.get(BASE).json()["results"][0]
        assert listed["session"] == body["session"]

        stopped = api.post(url(notebook, "stop"))

        assert stopped.status_code == 202
        body = stopped.json()
        assert body["status"] == "stopped"
        assert body["open_url"] is None
        assert body["session"]["exit_reason"] == "stopped"
        assert body["session"]["ended_at"] is not None

    def test_restart_opens_a_new_session(self, acme, alice, host, notebook):
        api = api_for(alice)
        first = api.post(url(notebook, "start")).json()["session"]["id"]

        restarted = api.post(url(notebook, "restart"))

        assert restarted.status_code == 202
        body = restarted.json()
        assert body["status"] == "running"
        assert body["session"]["id"] != first
        assert NotebookSession.objects.for_team(acme).get(pk=first).exit_reason == "restarted"

    def test_extend_resets_the_idle_countdown(self, acme, alice, host, notebook):
        api = api_for(alice)
        api.post(url(notebook, "start"))

        response = api.post(url(notebook, "extend"))

        assert response.status_code == 200
        session = NotebookSession.objects.for_team(acme).get(notebook=notebook)
        assert session.activity_at is not None
        assert session.idle_warned_at is None

    def test_the_machine_changes_only_while_stopped(self, acme, alice, host, notebook):
        api = api_for(alice)
        api.post(url(notebook, "start"))

        refused = api.patch(url(notebook), {"machine_type": "cpu-large"}, format="json")

        assert "Stop the notebook" in assert_error(refused, 409, "conflict")["message"]

    def test_a_read_token_cannot_start(self, acme, alice, host, notebook):
        api = api_for(alice, scopes=["notebooks:read"])

        assert api.get(url(notebook)).status_code == 200
        error = assert_error(api.post(url(notebook, "start")), 403, "permission_denied")
        assert "notebooks:write" in error["message"]
        assert_error(api_for(alice, scopes=["teams:write"]).get(BASE), 403)
        notebook.refresh_from_db()
        assert notebook.desired_state == "stopped"

    def test_a_viewer_reads_but_cannot_start(self, acme, host, notebook):
        viewer = UserFactory.create()
        add_member(acme, viewer, Role.VIEWER)
        api = api_for(viewer)

        assert api.get(BASE).status_code == 200
        assert api.get(url(notebook, "logs")).status_code == 200
        for action in ("start", "stop", "restart", "extend"):
            assert_error(api.post(url(notebook, action)), 403, "permission_denied")
        assert_error(api.delete(url(notebook), {"confirmation": "Churn model"}, format="json"), 403)
        notebook.refresh_from_db()
        assert (notebook.desired_state, notebook.deleted_at) == ("stopped", None)


class TestEventsAndLogs:
    def test_events_are_newest_first_and_paged(self, acme, alice, host, notebook):
        api = api_for(alice)
        api.post(url(notebook, "start"))
        api.post(url(notebook, "stop"))

        first = api.get(f"{url(notebook, 'events')}?page_size=2").json()
        second = api.get(first["next"]).json()

        assert len(first["results"]) == 2
        assert first["results"][0]["phase"] == "stopped"
        assert first["results"][0]["status"] == "stopped"
        assert first["results"][0]["created_at"] >= first["results"][1]["created_at"]
        ids = [e["id"] for e in first["results"]] + [e["id"] for e in second["results"]]
        assert len(set(ids)) == len(ids)
        everything = api.get(f"{url(notebook, 'events')}?page_size=200").json()["results"]
        assert everything[-1]["phase"] == "queued"

    def test_logs_after_returns_only_newer_messages_in_order(self, acme, alice, host, notebook):
        api = api_for(alice)
        api.post(url(notebook, "start"))
        logs_shipped()
        stream_publish(notebook.stream, {"type": "logs", "lines": ["hello"]})
        stream_publish(notebook.stream, {"type": "logs", "lines": ["world"]})

        everything = api.get(url(notebook, "logs")).json()
        last = everything["last"]
        assert last == stream_last(notebook.stream)
        seqs = [m["seq"] for m in everything["messages"]]
        assert seqs == sorted(seqs)
        assert seqs[-1] == last
        assert everything["messages"][-1] == {"seq": last, "type": "logs", "lines": ["world"]}

        newer = api.get(f"{url(notebook, 'logs')}?after={last - 1}").json()
        assert newer["messages"] == [{"seq": last, "type": "logs", "lines": ["world"]}]
        assert api.get(f"{url(notebook, 'logs')}?after={last}").json()["messages"] == []
        limited = api.get(f"{url(notebook, 'logs')}?after=0&limit=1").json()["messages"]
        assert [m["seq"] for m in limited] == [seqs[0]]

    def test_follow_streams_new_messages_and_ends_when_the_notebook_stops(
        self, acme, alice, host, notebook
    ):
        api = api_for(alice)
        api.post(url(notebook, "start"))
        after = stream_last(notebook.stream)

        def later():
            stream_publish(notebook.stream, {"type": "logs", "lines": ["working"]})
            services.notebook_stop(team=acme, actor=alice, notebook=notebook)
            connection.close()

        timer = threading.Timer(0.5, later)
        timer.start()
        response = api.get(f"{url(notebook, 'logs')}?follow=1&after={after}&timeout=20")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/x-ndjson"
        lines = ndjson(response)
        timer.join()

        seqs = [m["seq"] for m in lines]
        assert seqs == sorted(seqs)
        assert seqs[0] == after + 1
        # The fake host may still ship a line of the start's own after ``after`` was read, so
        # the message published here is one of the new ones, not necessarily the first.
        working = [m for m in lines if m.get("lines") == ["working"]]
        assert len(working) == 1
        assert working[0]["type"] == "logs"
        assert working[0]["seq"] > after
        assert lines[-1]["type"] == "status"
        assert lines[-1]["status"] == Status.STOPPED

    def test_follow_ends_after_its_timeout(self, acme, alice, host, notebook):
        api = api_for(alice)
        api.post(url(notebook, "start"))
        logs_shipped()
        last = stream_last(notebook.stream)

        response = api.get(f"{url(notebook, 'logs')}?follow=1&timeout=1")

        lines = ndjson(response)
        assert [m["seq"] for m in lines] == list(range(1, last + 1))

    def test_following_a_stopped_notebook_sends_the_backlog_and_ends(
        self, acme, alice, notebook, fake_runtime
    ):
        stream_publish(notebook.stream, {"type": "logs", "lines": ["old"]})

        response = api_for(alice).get(f"{url(notebook, 'logs')}?follow=1&timeout=600")

        lines = ndjson(response)
        assert lines[-1]["lines"] == ["old"]

    def test_follow_streams_under_asgi_too(self, acme, alice, host, notebook):
        import httpx
        from asgiref.sync import async_to_sync

        from config.asgi import application

        _, plaintext = token_create(user=alice, name="cli", scopes=["notebooks:read"])
        stream_publish(notebook.stream, {"type": "logs", "lines": ["one"]})

        async def run() -> httpx.Response:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=application),
                base_url="http://testserver",
                headers={"Authorization": f"Bearer {plaintext}"},
            ) as client:
                return await client.get(f"{url(notebook, 'logs')}?follow=1&timeout=1")

        response = async_to_sync(run)()

        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        assert [json.loads(line)["lines"] for line in response.text.splitlines()] == [["one"]]


class TestFollowEndsWithAccess:
    """A follow checks, as it goes, that its reader may still read (ARCHITECTURE decision 12)."""

    @staticmethod
    def follow_while(api, notebook, change, *, timeout=20):
        """Follow in this thread; run ``change`` in another half a second in. The lines got,
        and how long after ``change`` returned the response ended."""
        import time

        changed: list[float] = []

        def later():
            change()
            changed.append(time.monotonic())
            connection.close()

        timer = threading.Timer(0.5, later)
        timer.start()
        lines = ndjson(api.get(f"{url(notebook, 'logs')}?follow=1&timeout={timeout}"))
        ended = time.monotonic()
        timer.join()
        return lines, ended - changed[0]

    def test_a_removed_members_follow_ends_within_a_second(self, acme, alice, bob, host, notebook):
        from apps.teams.services import member_remove

        api_for(alice).post(url(notebook, "start"))

        def remove_bob():
            member = Membership.objects.for_team(acme).get(user=bob)
            member_remove(team=acme, actor=alice, member=member)

        lines, waited = self.follow_while(api_for(bob), notebook, remove_bob)

        assert waited < 1.0
        assert lines  # it followed until then

    def test_a_revoked_tokens_follow_ends_within_a_second(self, acme, alice, bob, host, notebook):
        from apps.accounts.models import PersonalAccessToken
        from apps.accounts.tokens import token_revoke

        api_for(alice).post(url(notebook, "start"))
        api = api_for(bob)
        token = PersonalAccessToken.objects.get(user=bob)

        lines, waited = self.follow_while(
            api, notebook, lambda: token_revoke(user=bob, token=token)
        )

        assert waited < 1.0
        assert lines  # it followed until then

    def test_a_stolen_sessions_follow_ends_when_the_password_changes(
        self, acme, alice, bob, host, notebook
    ):
        # Mallory holds bob's browser session and follows the logs with it. Bob changes his
        # password, which signs every other session out: the follow must end with it.
        api_for(alice).post(url(notebook, "start"))
        mallory = APIClient()
        mallory.force_login(bob)

        def bob_changes_his_password():
            bob.set_password("an entirely new passphrase 42")
            bob.save(update_fields=["password"])

        lines, waited = self.follow_while(mallory, notebook, bob_changes_his_password)

        assert waited < 1.0
        assert lines  # it followed until then
        # And the session itself no longer works for anything else.
        assert mallory.get(url(notebook)).status_code in (401, 403)

    def test_a_follow_ends_when_its_session_is_signed_out(self, acme, alice, bob, host, notebook):
        from django.contrib.sessions.models import Session

        api_for(alice).post(url(notebook, "start"))
        mallory = APIClient()
        mallory.force_login(bob)
        key = mallory.session.session_key

        # Bob signs the session out from another (allauth's sessions page deletes it).
        lines, waited = self.follow_while(
            mallory, notebook, lambda: Session.objects.filter(session_key=key).delete()
        )

        assert waited < 1.0
        assert lines

    def test_a_session_that_stays_signed_in_keeps_following(self, acme, alice, host, notebook):
        api_for(alice).post(url(notebook, "start"))
        browser = APIClient()
        browser.force_login(alice)

        def publish():
            stream_publish(notebook.stream, {"type": "logs", "lines": ["still here"]})

        lines, waited = self.follow_while(browser, notebook, publish, timeout=2)

        assert lines[-1]["lines"] == ["still here"]
        assert waited > 1.0  # it ran to its timeout

    def test_a_member_who_stays_keeps_following(self, acme, alice, bob, host, notebook):
        from apps.teams.services import member_remove

        api_for(alice).post(url(notebook, "start"))

        def remove_bob():
            member = Membership.objects.for_team(acme).get(user=bob)
            member_remove(team=acme, actor=alice, member=member)
            stream_publish(notebook.stream, {"type": "logs", "lines": ["after bob left"]})

        lines, waited = self.follow_while(api_for(alice), notebook, remove_bob, timeout=2)

        assert lines[-1]["lines"] == ["after bob left"]
        assert waited > 1.0  # it ran to its timeout

    def test_under_asgi_a_removed_members_follow_ends_within_a_second(
        self, acme, alice, bob, host, notebook
    ):
        import asyncio
        import time

        import httpx
        from asgiref.sync import async_to_sync, sync_to_async

        from apps.teams.services import member_remove
        from config.asgi import application

        api_for(alice).post(url(notebook, "start"))
        _, plaintext = token_create(user=bob, name="cli", scopes=["notebooks:read"])

        def remove_bob():
            member = Membership.objects.for_team(acme).get(user=bob)
            member_remove(team=acme, actor=alice, member=member)

        async def run() -> tuple[httpx.Response, float]:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=application),
                base_url="http://testserver",
                headers={"Authorization": f"Bearer {plaintext}"},
            ) as client:

                async def later() -> float:
                    await asyncio.sleep(0.5)
                    await sync_to_async(remove_bob)()
                    return time.monotonic()

                response, removed_at = await asyncio.gather(
                    client.get(f"{url(notebook, 'logs')}?follow=1&timeout=20"),
                    later(),
                )
                return response, time.monotonic() - removed_at

        response, waited = async_to_sync(run)()

        assert response.status_code == 200
        assert response.text  # the backlog came first
        assert waited < 1.0
