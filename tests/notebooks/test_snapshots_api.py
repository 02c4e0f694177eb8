"""A notebook's snapshots through the API and its pages: list, take, read, restore into a
copy; who may do which; the notebook page's "Files saved" line."""

from __future__ import annotations

import pytest
from django.utils import timezone

from apps.core.models import AuditEntry
from apps.notebooks.models import Notebook, NotebookSnapshot, SnapshotFile
from tests.dataset_fixtures import store_blob
from tests.helpers import bearer, make_token
from tests.notebooks.snapshot_helpers import hosted, sha, snapshot_tasks

pytestmark = pytest.mark.django_db

DATA = b"x" * 2_100_000


@pytest.fixture
def queued(monkeypatch, catalogue):
    return snapshot_tasks(monkeypatch)


def ready_snapshot(notebook, files: dict[str, bytes]) -> NotebookSnapshot:
    """A ready snapshot of ``notebook`` holding ``files``, as a host's save leaves one."""
    snapshot = NotebookSnapshot.objects.for_team(notebook.team_id).create(
        team_id=notebook.team_id,
        notebook=notebook,
        reason="stop",
        state="ready",
        file_count=len(files),
        total_bytes=sum(len(d) for d in files.values()),
        sent_bytes=7,
        finished_at=timezone.now(),
    )
    for path, data in files.items():
        SnapshotFile.objects.for_team(notebook.team_id).create(
            team_id=notebook.team_id,
            snapshot=snapshot,
            path=path,
            size=len(data),
            sha256=sha(data),
            blob=store_blob(data),
            mode=0o600,
        )
    return snapshot


def api(user):
    return bearer(make_token(user)[1])


def url(notebook, rest=""):
    return f"/api/v1/teams/{notebook.team.slug}/notebooks/{notebook.pk}/snapshots/{rest}"


def test_members_list_and_read_snapshots(acme, alice, erin, media, queued):
    notebook = hosted(acme, alice)
    snapshot = ready_snapshot(notebook, {"a.txt": b"a", "b.bin": DATA})

    listed = api(erin).get(url(notebook))

    assert listed.status_code == 200
    (row,) = listed.json()
    assert row["id"] == snapshot.pk
    assert (row["state"], row["reason"], row["files"], row["bytes"]) == (
        "ready",
        "stop",
        2,
        len(DATA) + 1,
    )
    assert row["sent_bytes"] == 7
    assert api(erin).get(url(notebook, f"{snapshot.pk}/")).json()["id"] == snapshot.pk
    other = hosted(acme, alice, "Other")
    assert api(erin).get(url(other, f"{snapshot.pk}/")).status_code == 404


def test_take_a_snapshot(acme, alice, bob, erin, media, queued, django_capture_on_commit_callbacks):
    notebook = hosted(acme, alice)

    assert api(erin).post(url(notebook)).status_code == 403
    with django_capture_on_commit_callbacks(execute=True):
        taken = api(bob).post(url(notebook))

    assert taken.status_code == 202
    assert (taken.json()["state"], taken.json()["reason"]) == ("saving", "manual")
    assert len(queued) == 1
    assert AuditEntry.objects.for_team(acme).filter(action="notebook.snapshot_taken").exists()
    fresh = hosted(acme, alice, "Fresh")
    Notebook.objects.for_team(acme).filter(pk=fresh.pk).update(volume_host=None)
    refused = api(bob).post(url(fresh))
    assert refused.status_code == 409
    assert "no files to snapshot yet" in refused.json()["error"]["message"]


def test_restore_into_a_copy(acme, alice, bob, erin, media, queued):
    notebook = hosted(acme, alice)
    snapshot = ready_snapshot(notebook, {"a.txt": b"a"})

    assert api(erin).post(url(notebook, f"{snapshot.pk}/copy/"), {"name": "C"}).status_code == 403
    made = api(bob).post(url(notebook, f"{snapshot.pk}/copy/"), {"name": "Copy"}, format="json")

    assert made.status_code == 201, made.content
    copy = Notebook.objects.for_team(acme).get(pk=made.json()["id"])
    assert (copy.name, copy.template) == ("Copy", notebook.template)
    first = NotebookSnapshot.objects.for_team(acme).get(notebook=copy)
    assert (first.reason, first.copied_from_id, first.file_count) == ("copy", snapshot.pk, 1)
    taken = api(bob).post(url(notebook, f"{snapshot.pk}/copy/"), {"name": "Copy"}, format="json")
    assert taken.status_code == 400
    assert (
        api(bob).post(url(notebook, f"{snapshot.pk}/copy/"), {}, format="json").status_code == 400
    )


def test_charlie_gets_404(acme, alice, charlie, globex, media, queued):
    notebook = hosted(acme, alice)
    snapshot = ready_snapshot(notebook, {"a.txt": b"a"})

    for path in (url(notebook), url(notebook, f"{snapshot.pk}/")):
        assert api(charlie).get(path).status_code == 404
    assert api(charlie).post(url(notebook)).status_code == 404
    copied = api(charlie).post(url(notebook, f"{snapshot.pk}/copy/"), {"name": "Mine"})
    assert copied.status_code == 404
    assert not Notebook.objects.for_team(globex).exists()
    assert queued == []


# --- pages -----------------------------------------------------------------------------------


def test_the_notebook_page_says_when_its_files_were_saved(acme, alice, erin, client, media, queued):
    notebook = hosted(acme, alice)
    client.force_login(alice)
    page = f"/t/acme/notebooks/{notebook.pk}/"

    assert "Files not saved yet." in client.get(page).content.decode()
    ready_snapshot(notebook, {"a.txt": b"a", "b.bin": DATA})
    shown = client.get(page).content.decode()

    assert "Files saved" in shown
    assert "2 files, 2.1 MB" in shown
    assert 'data-testid="snapshot-take"' in shown
    client.force_login(erin)
    assert 'data-testid="snapshot-take"' not in client.get(page).content.decode()


def test_take_a_snapshot_from_the_page(acme, alice, client, media, queued):
    notebook = hosted(acme, alice)
    client.force_login(alice)

    answer = client.post(f"/t/acme/notebooks/{notebook.pk}/snapshots/take/", follow=True)

    assert "Taking a snapshot" in answer.content.decode()
    assert NotebookSnapshot.objects.for_team(acme).get().reason == "manual"


def test_the_snapshots_page_lists_them_and_restores_into_a_copy(acme, alice, client, media, queued):
    notebook = hosted(acme, alice)
    snapshot = ready_snapshot(notebook, {"a.txt": b"a"})
    NotebookSnapshot.objects.for_team(acme).create(
        team=acme, notebook=notebook, reason="schedule", state="failed", failure="A file changed."
    )
    client.force_login(alice)

    page = client.get(f"/t/acme/notebooks/{notebook.pk}/snapshots/").content.decode()

    assert page.count('data-testid="snapshot-row"') == 2
    assert "When it stopped" in page
    assert "A file changed." in page
    assert page.count('data-testid="snapshot-copy"') == 1  # the ready one only
    answer = client.post(
        f"/t/acme/notebooks/{notebook.pk}/snapshots/{snapshot.pk}/copy/",
        {"name": "Restored"},
        follow=True,
    )
    copy = Notebook.objects.for_team(acme).get(name="Restored")
    assert answer.redirect_chain[-1][0] == f"/t/acme/notebooks/{copy.pk}/"
    assert "its first start restores them" in answer.content.decode()
