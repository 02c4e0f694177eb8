"""The save ticket a host uses at /hosts/saves/<id>/: single-use, short-lived, bound to one
team, one actor and one version; the actor's permission is checked again at each call.

Each test plays the host with exactly what a host holds (the save's address and its
ticket) and asserts on the server's state afterwards.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from apps.datasets.models import Upload
from apps.models.models import ModelVersion, SaveTicket
from apps.models.services.saves import FAILED_ELSE, FAILURES, STOPPED_ANSWERING
from apps.models.tasks import upkeep_task
from apps.notebooks import saves
from apps.notebooks.models import Status
from apps.teams.models import Membership
from tests.factories import HostFactory, NotebookSessionFactory, add_member
from tests.helpers import bearer, make_token
from tests.notebook_fixtures import make_notebook

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024
DATA = b"weights"
MANIFEST = {
    "files": [{"path": "model.bin", "size": len(DATA), "sha256": hashlib.sha256(DATA).hexdigest()}],
    "skipped": [],
}


@pytest.fixture
def queued(monkeypatch):
    sent: list[tuple] = []
    monkeypatch.setattr(
        saves.agent_save_folder, "apply_async", lambda args, queue: sent.append((*args, queue))
    )
    return sent


def running(team, actor, name="Trainer"):
    notebook = make_notebook(team, actor, name)
    notebook.status = Status.RUNNING
    notebook.save(update_fields=["status"])
    NotebookSessionFactory.create(
        notebook=notebook, status=Status.RUNNING, host=HostFactory.create(), runtime_state={}
    )
    return notebook


class Host:
    """What the host's agent holds: the save's address and its ticket."""

    def __init__(self, client, args):
        host_name, _, _, url, self.ticket, queue = args
        assert queue == f"host.{host_name}"  # the agent of the notebook's host
        self.base = "/" + url.split("/", 3)[3]  # the path under LATTICE_INTERNAL_URL
        self.client = client

    def post(self, step, body=None, ticket=None):
        return self.client.post(
            f"{self.base}/{step}",
            body or {},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Ticket {ticket or self.ticket}",
        )

    def put(self, url, data, checksum):
        return self.client.put(
            url,
            data,
            content_type="application/octet-stream",
            HTTP_AUTHORIZATION=f"Ticket {self.ticket}",
            HTTP_X_CHUNK_SHA256=checksum,
        )


def start(team, actor, queued, client, notebook=None, model_name="Churn"):
    notebook = notebook or running(team, actor)
    ticket = saves.notebook_save_model(
        team=team, actor=actor, notebook=notebook, folder="out", model_name=model_name
    )
    return ticket, Host(client, queued[-1])


def version_of(ticket: SaveTicket) -> ModelVersion:
    return ModelVersion.objects.for_team(ticket.team_id).get(pk=ticket.version_id)


def test_a_whole_save_then_the_ticket_is_used_up(acme, alice, catalogue, media, queued, client):
    ticket, host = start(acme, alice, queued, client)

    assert host.post("progress", {"phase": "reading", "done": 7, "total": 0}).status_code == 200
    assert version_of(ticket).progress == {"phase": "reading", "done": 7, "total": 0}
    answer = host.post("manifest", MANIFEST).json()
    assert answer["state"] == "upload"
    sha = MANIFEST["files"][0]["sha256"]
    assert answer["missing"] == {sha: [0]}
    target = host.post(f"blobs/{sha}/chunks/0/target", {"sha256": sha}).json()
    assert target["url"].startswith(host.base)  # under the ticket, not the team API
    assert host.put(target["url"], DATA, sha).status_code == 200
    assert host.post("complete").json() == {"version": 1}

    ticket.refresh_from_db()
    assert ticket.result == SaveTicket.Result.READY
    assert ticket.finished_at is not None
    refused = host.post("progress", {"phase": "sending", "done": 1, "total": 1})
    assert refused.status_code == 403
    assert refused.json()["code"] == "ticket_invalid"
    assert "used up" in refused.json()["detail"]
    assert version_of(ticket).status == ModelVersion.Status.READY


def test_only_the_tickets_hash_is_stored(acme, alice, catalogue, queued, client):
    ticket, host = start(acme, alice, queued, client)

    assert ticket.token_hash == hashlib.sha256(host.ticket.encode()).hexdigest()
    assert host.ticket not in str(SaveTicket.objects.for_team(acme).values().get())


def test_an_expired_ticket_is_refused_and_its_save_fails(
    acme, alice, catalogue, queued, client, settings
):
    settings.LATTICE_SAVE_TICKET_SECONDS = 60
    ticket, host = start(acme, alice, queued, client)
    assert ticket.expires_at <= timezone.now() + timedelta(seconds=61)
    SaveTicket.objects.for_team(acme).filter(pk=ticket.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    refused = host.post("manifest", MANIFEST)

    assert refused.status_code == 403
    assert "expired" in refused.json()["detail"]
    assert version_of(ticket).status == ModelVersion.Status.FAILED
    assert not Upload.objects.for_team(acme).exists()


def test_a_save_whose_host_went_quiet_shows_as_failed(acme, alice, catalogue, queued, client):
    ticket, host = start(acme, alice, queued, client)
    host.post("progress", {"phase": "sending", "done": 5, "total": 9})
    SaveTicket.objects.for_team(acme).filter(pk=ticket.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    shown = saves.notebook_saves(ticket_notebook(ticket))[0]

    assert (shown["state"], shown["running"]) == ("failed", False)
    assert shown["failure"] == STOPPED_ANSWERING


def test_the_housekeeping_fails_a_save_whose_host_stopped_answering(
    acme, alice, catalogue, media, queued, client, settings
):
    # The host died after its manifest: nothing will call again, and no page was opened.
    dead, host = start(acme, alice, queued, client)
    host.post("manifest", MANIFEST)
    live = saves.notebook_save_model(
        team=acme,
        actor=alice,
        notebook=running(acme, alice, "Other"),
        folder="out",
        model=dead.model.slug,
        model_name="",
    )
    SaveTicket.objects.for_team(acme).filter(pk=dead.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert version_of(dead).status == ModelVersion.Status.UPLOADING

    assert upkeep_task.apply().result == {"saves_failed": 1}

    version = version_of(dead)
    assert (version.status, version.failure) == (ModelVersion.Status.FAILED, STOPPED_ANSWERING)
    dead.refresh_from_db()
    assert (dead.result, dead.failure) == (SaveTicket.Result.FAILED, STOPPED_ANSWERING)
    assert dead.finished_at is not None
    assert version_of(live).status == ModelVersion.Status.UPLOADING  # its host still answers
    assert upkeep_task.apply().result == {"saves_failed": 0}
    # And beat runs it.
    assert settings.CELERY_BEAT_SCHEDULE["models-upkeep"]["task"] == upkeep_task.name


def test_the_housekeeping_fails_a_save_whose_ticket_is_gone_and_leaves_api_uploads(
    acme, alice, catalogue, media, queued, client
):
    from apps.models.services.versions import version_start

    gone, _ = start(acme, alice, queued, client)
    version = version_of(gone)
    SaveTicket.objects.for_team(acme).filter(pk=gone.pk).delete()
    uploaded, upload = version_start(
        team=acme, actor=alice, model=version.model, files=MANIFEST["files"]
    )
    assert upload is not None
    long_ago = timezone.now() - timedelta(days=1)
    ModelVersion.objects.for_team(acme).update(created_at=long_ago)

    assert upkeep_task.apply().result == {"saves_failed": 1}

    version.refresh_from_db()
    assert (version.status, version.failure) == (ModelVersion.Status.FAILED, STOPPED_ANSWERING)
    # An upload the API started is its upload's business (abandoned after a week).
    uploaded.refresh_from_db()
    assert uploaded.status == ModelVersion.Status.UPLOADING


def ticket_notebook(ticket):
    from apps.notebooks.models import NotebookSession

    return NotebookSession.objects.for_team(ticket.team_id).get(pk=ticket.source_id).notebook


def test_each_use_moves_the_expiry_on(acme, alice, catalogue, queued, client):
    ticket, host = start(acme, alice, queued, client)
    soon = timezone.now() + timedelta(seconds=5)
    SaveTicket.objects.for_team(acme).filter(pk=ticket.pk).update(expires_at=soon)

    assert host.post("progress", {"phase": "reading", "done": 1, "total": 0}).status_code == 200

    ticket.refresh_from_db()
    assert ticket.expires_at > soon + timedelta(seconds=60)


def test_no_ticket_or_a_wrong_one_is_refused_and_changes_nothing(
    acme, alice, catalogue, queued, client
):
    ticket, host = start(acme, alice, queued, client)

    for wrong in ("", "not-the-ticket", host.ticket[:-1]):
        response = client.post(
            f"{host.base}/manifest",
            MANIFEST,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Ticket {wrong}",
        )
        assert response.status_code == 403
    assert (
        client.post(f"{host.base}/manifest", MANIFEST, content_type="application/json").status_code
        == 403
    )
    version = version_of(ticket)
    assert version.status == ModelVersion.Status.UPLOADING
    assert version.upload_id is None


def test_an_outsiders_ticket_is_refused_on_anothers_save(
    acme, alice, globex, charlie, catalogue, queued, client
):
    ours, host = start(acme, alice, queued, client)
    _, theirs = start(globex, charlie, queued, client)

    response = host.post("manifest", MANIFEST, ticket=theirs.ticket)

    assert response.status_code == 403
    assert version_of(ours).upload_id is None
    assert SaveTicket.objects.for_team(acme).get().finished_at is None
    # Their ticket works on their own save only.
    assert theirs.post("progress", {"phase": "reading", "done": 0, "total": 0}).status_code == 200


def test_a_member_removed_mid_save_stops_it(acme, alice, catalogue, queued, client):
    bob = add_member(acme, make_user("bob-saver@example.com"), "member").user
    ticket, host = start(acme, bob, queued, client)
    assert host.post("progress", {"phase": "reading", "done": 1, "total": 0}).status_code == 200

    Membership.objects.for_team(acme).filter(user=bob).delete()
    refused = host.post("manifest", MANIFEST)

    assert refused.status_code == 403
    assert "no longer" in refused.json()["detail"]
    version = version_of(ticket)
    assert version.status == ModelVersion.Status.FAILED
    assert "no longer" in version.failure
    assert host.post("progress", {"phase": "reading", "done": 2, "total": 0}).status_code == 403


def test_a_hostile_manifest_is_refused_ends_the_save_and_stores_nothing(
    acme, alice, catalogue, queued, client
):
    ticket, host = start(acme, alice, queued, client)
    hostile = {
        "files": [{"path": "../../etc/passwd", "size": 1, "sha256": "a" * 64}],
        "skipped": [],
    }

    refused = host.post("manifest", hostile)

    assert refused.status_code == 400
    assert refused.json()["detail"]
    assert version_of(ticket).status == ModelVersion.Status.FAILED
    assert not Upload.objects.for_team(acme).exists()
    assert host.post("manifest", MANIFEST).status_code == 403


def test_the_host_saying_a_file_changed_fails_the_version_naming_it(
    acme, alice, catalogue, media, queued, client
):
    ticket, host = start(acme, alice, queued, client)
    host.post("manifest", MANIFEST)

    assert host.post("fail", {"code": "changed", "path": "model.bin"}).status_code == 200

    version = version_of(ticket)
    assert version.status == ModelVersion.Status.FAILED
    assert version.failure == f"model.bin: {FAILURES['changed']}"
    assert version.number is None


@pytest.mark.parametrize(
    ("body", "failure"),
    [
        # A host's own words are never shown: only the server's, for the code it sends.
        (
            {"code": "changed", "reason": "<b>Call 555-0100 now</b>", "path": "model.bin"},
            f"model.bin: {FAILURES['changed']}",
        ),
        # A path that is not one of the files this host listed for this save is not shown.
        ({"code": "changed", "path": "Send your password to evil.example"}, FAILURES["changed"]),
        ({"code": "vanished", "path": "../../etc/passwd"}, FAILURES["vanished"]),
        # A folder-level code is worded with the save's own folder, not the host's.
        ({"code": "missing", "path": "/elsewhere"}, "/notebooks/out does not exist."),
        # An unknown code, or none, gets the generic sentence.
        ({"code": "you-have-been-hacked", "path": "model.bin"}, "model.bin: " + FAILED_ELSE),
        ({"reason": "free text"}, FAILED_ELSE),
    ],
    ids=["own-words", "foreign-path", "hostile-path", "folder-code", "unknown-code", "no-code"],
)
def test_a_failure_is_told_by_code_and_worded_by_the_server(
    acme, alice, catalogue, media, queued, client, body, failure
):
    ticket, host = start(acme, alice, queued, client)
    host.post("manifest", MANIFEST)

    assert host.post("fail", body).status_code == 200

    expected = failure.format(folder="/notebooks/out")
    assert version_of(ticket).failure == expected
    ticket.refresh_from_db()
    assert ticket.failure == expected
    assert "555" not in expected
    assert "evil" not in expected


def test_a_failure_before_the_manifest_names_no_path(acme, alice, catalogue, queued, client):
    ticket, host = start(acme, alice, queued, client)

    host.post("fail", {"code": "changed", "path": "model.bin"})

    assert version_of(ticket).failure == FAILURES["changed"]


def test_a_chunk_that_arrived_damaged_does_not_end_the_save(
    acme, alice, catalogue, media, queued, client
):
    ticket, host = start(acme, alice, queued, client)
    sha = MANIFEST["files"][0]["sha256"]
    host.post("manifest", MANIFEST)
    target = host.post(f"blobs/{sha}/chunks/0/target", {"sha256": sha}).json()

    damaged = host.put(target["url"], b"weightz", sha)

    assert damaged.status_code == 400
    assert damaged.json()["code"] == "chunk_damaged"
    assert version_of(ticket).status == ModelVersion.Status.UPLOADING
    # Sent again, whole: the save goes on to its end.
    assert host.put(target["url"], DATA, sha).status_code == 200
    assert host.post("complete").json() == {"version": 1}


def test_any_other_refused_chunk_ends_the_save(acme, alice, catalogue, media, queued, client):
    ticket, host = start(acme, alice, queued, client)
    sha = MANIFEST["files"][0]["sha256"]
    host.post("manifest", MANIFEST)
    target = host.post(f"blobs/{sha}/chunks/0/target", {"sha256": sha}).json()

    refused = host.put(target["url"], DATA + b"!", sha)  # a byte more than the chunk holds

    assert refused.status_code == 400
    assert refused.json()["code"] != "chunk_damaged"
    assert version_of(ticket).status == ModelVersion.Status.FAILED


# --- the API ------------------------------------------------------------------------------------


def make_user(email):
    from tests.factories import UserFactory

    return UserFactory.create(email=email)


def test_the_api_starts_a_save_of_a_running_notebook(acme, alice, catalogue, queued):
    notebook = running(acme, alice)

    response = make_api(alice).post(
        f"/api/v1/teams/acme/notebooks/{notebook.pk}/save-model/",
        {"folder": "out/run1", "model_name": "Churn", "message": "fit 1"},
        format="json",
    )

    assert response.status_code == 202, response.content
    body = response.json()
    assert (body["model"], body["folder"], body["state"]) == (
        "churn",
        "/notebooks/out/run1",
        "waiting",
    )
    assert queued[-1][2] == "out/run1"


def test_the_api_passes_the_format_to_the_version_and_refuses_an_unknown_one(
    acme, alice, catalogue, queued
):
    notebook = running(acme, alice)
    url = f"/api/v1/teams/acme/notebooks/{notebook.pk}/save-model/"

    response = make_api(alice).post(
        url, {"folder": "out", "model_name": "Churn", "format": "onnx"}, format="json"
    )

    assert response.status_code == 202, response.content
    ticket = SaveTicket.objects.for_team(acme).get()
    assert ticket.version.format == "onnx"
    refused = make_api(alice).post(
        url, {"folder": "out", "model": "churn", "format": "exe"}, format="json"
    )
    assert refused.status_code == 400
    assert "format" in refused.json()["error"]["fields"]
    assert len(queued) == 1


def test_a_token_needs_the_models_write_scope_too(acme, alice, catalogue, queued):
    notebook = running(acme, alice)
    api = bearer(make_token(alice, ["notebooks:read", "notebooks:write"])[1])

    response = api.post(
        f"/api/v1/teams/acme/notebooks/{notebook.pk}/save-model/",
        {"folder": "out", "model_name": "Churn"},
        format="json",
    )

    assert response.status_code == 403
    assert "models:write" in response.content.decode()
    assert queued == []


def test_an_outsiders_notebook_cannot_be_the_source(
    acme, alice, charlie, globex, catalogue, queued
):
    notebook = running(acme, alice)
    api = make_api(charlie)

    for team in ("acme", "globex"):
        response = api.post(
            f"/api/v1/teams/{team}/notebooks/{notebook.pk}/save-model/",
            {"folder": "out", "model_name": "Stolen"},
            format="json",
        )
        assert response.status_code == 404
    assert queued == []
    assert not SaveTicket.objects.for_team(acme).exists()
    assert not SaveTicket.objects.for_team(globex).exists()


def test_the_api_refuses_a_stopped_notebook(acme, alice, catalogue, queued):
    notebook = make_notebook(acme, alice, "Stopped")

    response = make_api(alice).post(
        f"/api/v1/teams/acme/notebooks/{notebook.pk}/save-model/",
        {"folder": "out", "model_name": "Churn"},
        format="json",
    )

    assert response.status_code == 409
    assert queued == []


def make_api(user):
    return bearer(make_token(user)[1])


# --- a manifest as large as a version may be ----------------------------------------------------


def _many(count: int) -> dict:
    """``count`` files of the same bytes: a 10 MB manifest with one blob to send."""
    entry = MANIFEST["files"][0]
    return {
        "files": [{**entry, "path": f"shard/{i:06d}.bin"} for i in range(count)],
        "skipped": [],
    }


def test_a_manifest_of_100000_files_is_accepted_and_one_more_is_refused_by_the_count(
    acme, alice, catalogue, media, queued, client
):
    ticket, host = start(acme, alice, queued, client)
    big = _many(100_000)
    assert len(json.dumps(big)) > 2 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # past Django's limit

    answer = host.post("manifest", big)

    assert answer.status_code == 200, answer.content[:300]
    assert answer.json()["state"] == "upload"
    assert version_of(ticket).file_count == 100_000

    other, host = start(acme, alice, queued, client, running(acme, alice, "Other"), "Big")
    refused = host.post("manifest", _many(100_001))

    assert refused.status_code == 400
    assert "at most 100,000 files" in refused.json()["detail"]
    assert version_of(other).status == ModelVersion.Status.FAILED


def test_a_hosts_bodies_are_bounded_before_they_are_parsed(acme, alice, catalogue, queued, client):
    """A stolen ticket cannot make the web process build a huge body: a step other than the
    manifest takes 16 KiB; a manifest's parse stops at the first object past 200,000 (32
    MiB of "{}" was millions of dicts); JSON nested too deep is a 400, not a 500."""
    ticket, host = start(acme, alice, queued, client)
    big_progress = host.client.post(
        f"{host.base}/progress",
        json.dumps({"phase": "reading", "done": 1, "total": 2, "pad": "x" * 20_000}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Ticket {host.ticket}",
    )
    assert big_progress.status_code == 400
    assert "at most 16 KiB" in big_progress.json()["detail"]

    ticket, host = start(acme, alice, queued, client, running(acme, alice, "Second"), "Two")
    empties = host.client.post(
        f"{host.base}/manifest",
        '{"files": [' + ",".join(["{}"] * 300_000) + "]}",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Ticket {host.ticket}",
    )
    assert empties.status_code == 400
    assert "at most 100,000 files" in empties.json()["detail"]
    assert version_of(ticket).status == ModelVersion.Status.FAILED

    ticket, host = start(acme, alice, queued, client, running(acme, alice, "Third"), "Three")
    nested = host.client.post(
        f"{host.base}/manifest",
        "[" * 100_000 + "]" * 100_000,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Ticket {host.ticket}",
    )
    assert nested.status_code == 400
    assert nested.json()["detail"] == "The body is not JSON."


def test_the_apis_manifest_parser_counts_objects_too(acme, alice, media, client):
    from apps.models.services.registry import model_create

    model = model_create(team=acme, actor=alice, name="Counted")
    client.force_login(alice)
    answer = client.post(
        f"/api/v1/teams/acme/models/{model.slug}/versions/",
        '{"files": [' + ",".join(["{}"] * 300_000) + "]}",
        content_type="application/json",
    )
    assert answer.status_code == 400
    assert "at most 100,000 files" in json.dumps(answer.json())
    assert not ModelVersion.objects.for_team(acme).exists()


def test_the_parsers_file_count_is_the_services():
    from apps.core.api.parsers import MANIFEST_FILES
    from apps.datasets.services.manifest import MAX_FILES

    assert MANIFEST_FILES == MAX_FILES


def test_a_content_length_in_other_digits_is_a_400(acme, alice, catalogue, media, queued, client):
    """A Content-Length of "²" (its isdigit() is True, int() raises) from a host or a client gets
    a 400, never a 500."""
    _, host = start(acme, alice, queued, client)
    for path, method in (
        (f"{host.base}/progress", "post"),
        (f"{host.base}/blobs/{'a' * 64}/chunks/0", "put"),
    ):
        answer = getattr(host.client, method)(
            path,
            b"{}",
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Ticket {host.ticket}",
            CONTENT_LENGTH="²",
        )
        # The first refusal ends the save, so the second meets a used-up ticket (403).
        assert answer.status_code in (400, 403), (path, answer.status_code)
    client.force_login(alice)
    chunk = client.put(
        f"/api/v1/teams/acme/uploads/1/blobs/{'a' * 64}/chunks/0/",
        b"x",
        content_type="application/octet-stream",
        CONTENT_LENGTH="²",
    )
    assert chunk.status_code in (400, 404)
