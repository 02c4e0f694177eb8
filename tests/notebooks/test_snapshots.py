"""A notebook's snapshot, end to end on the server's side: taken, saved by its host over
HTTP through a ticket with no person behind it, kept as SnapshotFile rows (with modes) over
the team's blob store, restored from per-object read links, copied, retained.

Each test plays the host with exactly what a host holds (the save's address and its
ticket) and asserts on the server's state afterwards.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage

from apps.core.errors import ServiceError
from apps.datasets import entitlements
from apps.datasets.models import Blob, blob_key
from apps.datasets.selectors import blobs_in_use, team_blob_sizes
from apps.datasets.upkeep import blobs_collect
from apps.machines.models import Host
from apps.models.models import SaveTicket
from apps.notebooks import snapshots
from apps.notebooks.models import Notebook, NotebookSnapshot, SnapshotFile
from apps.teams.models import Membership
from tests.dataset_fixtures import make_version
from tests.notebooks.snapshot_helpers import PlayedHost, hosted, sha, snapshot_tasks

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024  # the server's chunk size here (tests.dataset_fixtures.media)

FILES = {
    "train.py": b"print('fit')\n",
    "data/weights.bin": os.urandom(2 * CHUNK + 7),
    "run.sh": b"#!/bin/sh\necho hi\n",
    "empty.txt": b"",
}
MODES = {"run.sh": 0o755, "train.py": 0o600}


@pytest.fixture
def queued(monkeypatch, catalogue):
    return snapshot_tasks(monkeypatch)


def take(notebook, queued, reason=NotebookSnapshot.Reason.MANUAL):
    snapshot = snapshots.snapshot_take(notebook=notebook, reason=reason)
    assert snapshot is not None
    return snapshot, PlayedHost.of(queued[-1])


def stored(snapshot: NotebookSnapshot) -> dict[str, tuple[int, str, int]]:
    """path -> (size, sha256 of the bytes in storage, mode) of each file of the snapshot."""
    out = {}
    for row in SnapshotFile.objects.for_team(snapshot.team_id).filter(snapshot=snapshot):
        with default_storage.open(blob_key(row.blob.sha256), "rb") as handle:
            out[row.path] = (row.size, sha(handle.read()), row.mode)
    return out


def expected(files, modes=None):
    modes = modes or {}
    return {p: (len(d), sha(d), modes.get(p, 0o644)) for p, d in files.items()}


def test_a_snapshot_saved_by_its_host_keeps_the_files_and_their_modes(acme, alice, media, queued):
    notebook = hosted(acme, alice)

    snapshot, host = take(notebook, queued)

    (host_name, volume, _, _), queue = queued[-1]
    volume_host = notebook.volume_host
    assert volume_host is not None
    assert (host_name, volume) == (volume_host.name, notebook.volume)
    assert queue == volume_host.queue
    ticket = SaveTicket.objects.for_team(acme).get(pk=snapshot.save_ticket_id)
    assert ticket.created_by is None  # no person behind it: the ticket is the right
    assert (ticket.source, ticket.source_id) == ("snapshot", snapshot.pk)
    assert snapshot.state == NotebookSnapshot.State.SAVING

    sent = host.save(FILES, MODES)

    snapshot.refresh_from_db()
    assert snapshot.state == NotebookSnapshot.State.READY
    assert stored(snapshot) == expected(FILES, MODES)
    total = sum(len(d) for d in FILES.values())
    assert (snapshot.file_count, snapshot.total_bytes, snapshot.sent_bytes) == (4, total, sent)
    assert snapshot.finished_at is not None
    # The ticket is used up.
    assert host.post("progress", {"phase": "reading", "done": 1, "total": 1}).status_code == 403


def test_a_second_snapshot_sends_only_what_changed(acme, alice, media, queued):
    notebook = hosted(acme, alice)
    _, host = take(notebook, queued)
    host.save(FILES)
    changed = {**FILES, "train.py": b"print('fit better')\n"}

    second, host = take(notebook, queued)
    answer = host.manifest(changed).json()

    assert list(answer["missing"]) == [sha(changed["train.py"])]
    host.send_missing(answer, changed)
    assert host.post("complete").status_code == 200
    second.refresh_from_db()
    assert second.state == NotebookSnapshot.State.READY
    assert second.sent_bytes == len(changed["train.py"])
    assert stored(second) == expected(changed)


def test_take_returns_the_one_being_taken_and_none_without_a_host_that_answers(
    acme, alice, media, queued
):
    notebook = hosted(acme, alice)
    first = snapshots.snapshot_take(notebook=notebook, reason=NotebookSnapshot.Reason.MANUAL)

    again = snapshots.snapshot_take(notebook=notebook, reason=NotebookSnapshot.Reason.SCHEDULE)

    assert again == first
    assert len(queued) == 1
    never_started = hosted(acme, alice, "Fresh")
    never_started.volume_host = None
    never_started.save(update_fields=["volume_host"])
    assert snapshots.snapshot_take(notebook=never_started, reason="manual") is None
    offline = hosted(acme, alice, "Far")
    far = offline.volume_host
    assert far is not None
    Host.objects.filter(pk=far.pk).update(status=Host.Status.OFFLINE)
    offline.refresh_from_db()
    assert snapshots.snapshot_take(notebook=offline, reason="manual") is None
    assert len(queued) == 1
    assert not NotebookSnapshot.objects.for_team(acme).filter(notebook=offline).exists()


def test_a_snapshot_needs_no_member_behind_it(acme, alice, media, queued):
    """The notebook's maker left the team: its snapshots still save (no person's right)."""
    notebook = hosted(acme, alice)
    snapshot, host = take(notebook, queued)
    Membership.objects.for_team(acme).filter(user=alice).delete()

    host.save(FILES)

    snapshot.refresh_from_db()
    assert snapshot.state == NotebookSnapshot.State.READY


def test_the_storage_quota_never_refuses_a_snapshot_but_it_counts(acme, alice, media, queued):
    def full(team, *, used_bytes, adding_bytes):
        raise ServiceError("Over the plan's storage.", status_code=402)

    notebook = hosted(acme, alice)
    snapshot, host = take(notebook, queued)

    with entitlements.check_storage.override(full):
        host.save(FILES)

    snapshot.refresh_from_db()
    assert snapshot.state == NotebookSnapshot.State.READY
    usage = team_blob_sizes(acme)
    assert {sha(d) for d in FILES.values()} <= set(usage)


def test_blobs_a_snapshot_holds_are_never_collected(acme, alice, media, queued):
    notebook = hosted(acme, alice)
    snapshot, host = take(notebook, queued)
    host.save(FILES)
    later = snapshot.created_at + timedelta(days=30)

    blobs_collect(now=later)

    held = set(Blob.objects.filter(blobs_in_use()).values_list("sha256", flat=True))
    assert {sha(d) for d in FILES.values()} <= held
    assert set(stored(snapshot)) == set(FILES)
    # Once no snapshot holds them, they go.
    NotebookSnapshot.objects.for_team(acme).filter(pk=snapshot.pk).delete()
    assert blobs_collect(now=later) == len(FILES)


def test_a_snapshot_ticket_reaches_no_other_teams_blobs(acme, globex, alice, media, queued):
    """An attacker holding a snapshot's ticket lists a blob only globex holds: the server
    asks for its bytes (it does not take the hash as proof) and nothing of globex's is
    readable through the snapshot."""
    secret = b"globex's model weights"
    make_version(globex, "Secret", {"w.bin": secret})
    notebook = hosted(acme, alice)
    snapshot, host = take(notebook, queued)

    answer = host.manifest({"stolen.bin": secret}).json()

    assert answer["missing"] == {sha(secret): [0]}
    refused = host.post("complete")
    assert refused.status_code == 400
    snapshot.refresh_from_db()
    assert snapshot.state == NotebookSnapshot.State.FAILED
    assert not SnapshotFile.objects.for_team(acme).exists()
    assert sha(secret) not in team_blob_sizes(acme)


def test_a_snapshot_ticket_speaks_for_its_own_snapshot_only(acme, alice, media, queued):
    mine, host = take(hosted(acme, alice, "Mine"), queued)
    other, other_host = take(hosted(acme, alice, "Other"), queued)

    # Its ticket on the other snapshot's save: refused, and that save goes on.
    stolen = other_host.post("manifest", {"files": []}, ticket=host.ticket)
    assert stolen.status_code == 403
    other.refresh_from_db()
    assert other.state == NotebookSnapshot.State.SAVING
    other_host.save(FILES)
    other.refresh_from_db()
    assert other.state == NotebookSnapshot.State.READY
    # A model's or dataset's route is not a ticket's: nothing else answers it.
    assert host.client.get(
        f"/api/v1/teams/acme/notebooks/{mine.notebook_id}/snapshots/",
        HTTP_AUTHORIZATION=f"Ticket {host.ticket}",
    ).status_code in {401, 403}


def test_a_host_that_gives_up_fails_the_snapshot_in_the_servers_words(acme, alice, media, queued):
    told: list[NotebookSnapshot] = []
    snapshot, host = take(hosted(acme, alice), queued)
    host.manifest(FILES)

    with snapshots.snapshot_ended.override(told.append):
        assert host.post("fail", {"code": "changed", "path": "<b>pwned</b>"}).status_code == 200

    snapshot.refresh_from_db()
    assert snapshot.state == NotebookSnapshot.State.FAILED
    assert snapshot.failure.startswith("A file changed while the host saved it")
    assert "pwned" not in snapshot.failure
    assert [s.pk for s in told] == [snapshot.pk]


def test_an_empty_folder_is_a_ready_snapshot_of_no_files(acme, alice, media, queued):
    snapshot, host = take(hosted(acme, alice), queued)

    assert host.post("manifest", {"files": [], "skipped": ["link"]}).json()["state"] == "existing"

    snapshot.refresh_from_db()
    assert (snapshot.state, snapshot.file_count) == (NotebookSnapshot.State.READY, 0)


def test_the_restore_plan_links_each_file_to_its_blob_alone(acme, alice, media, queued, client):
    notebook = hosted(acme, alice)
    snapshot, host = take(notebook, queued)
    host.save(FILES, MODES)

    plan = snapshots.snapshot_restore_plan(
        snapshot, volume=notebook.volume, lifetime=timedelta(minutes=5)
    )

    assert (plan["snapshot"], plan["volume"]) == (snapshot.pk, notebook.volume)
    assert plan["total"] == sum(len(d) for d in FILES.values())
    assert [f["path"] for f in plan["files"]] == sorted(FILES)
    for entry in plan["files"]:
        data = FILES[entry["path"]]
        assert (entry["size"], entry["sha256"]) == (len(data), sha(data))
        assert entry["mode"] == MODES.get(entry["path"], 0o644)
        link = "/" + entry["url"].split("/", 3)[3]
        read = client.get(link)
        assert read.status_code == 200
        assert b"".join(read.streaming_content) == data
        # The link names that blob only: another hash under its signature is refused.
        other = link.replace(entry["sha256"], "0" * 64)
        assert client.get(other).status_code in {403, 404}


def test_a_copy_is_a_new_notebook_whose_first_snapshot_holds_the_same_files(
    acme, alice, media, queued
):
    notebook = hosted(acme, alice)
    snapshot, host = take(notebook, queued)
    host.save(FILES, MODES)
    blobs_before = Blob.objects.count()

    copy = snapshots.snapshot_copy(team=acme, actor=alice, snapshot=snapshot, name="Trainer copy")

    assert (copy.team_id, copy.template, copy.machine_type_id) == (
        acme.pk,
        notebook.template,
        notebook.machine_type_id,
    )
    assert copy.volume_host is None
    assert copy.volume != notebook.volume
    first = snapshots.snapshot_latest(copy)
    assert first is not None
    assert (first.reason, first.copied_from_id) == (NotebookSnapshot.Reason.COPY, snapshot.pk)
    assert stored(first) == expected(FILES, MODES)
    assert Blob.objects.count() == blobs_before  # no byte copied
    plan = snapshots.snapshot_restore_plan(first, volume=copy.volume, lifetime=timedelta(1))
    original = snapshots.snapshot_restore_plan(snapshot, volume=copy.volume, lifetime=timedelta(1))
    strip = [{k: v for k, v in f.items() if k != "url"} for f in original["files"]]
    assert [{k: v for k, v in f.items() if k != "url"} for f in plan["files"]] == strip
    # The copy keeps its files when the original goes.
    NotebookSnapshot.objects.for_team(acme).filter(notebook=notebook).delete()
    assert stored(first) == expected(FILES, MODES)


def test_a_copy_is_refused_a_taken_name_or_a_snapshot_not_ready(acme, alice, bob, media, queued):
    notebook = hosted(acme, alice)
    saving, _ = take(notebook, queued)

    with pytest.raises(ServiceError, match="ready"):
        snapshots.snapshot_copy(team=acme, actor=alice, snapshot=saving, name="New")
    NotebookSnapshot.objects.for_team(acme).filter(pk=saving.pk).update(state="ready")
    with pytest.raises(ServiceError, match="already has a notebook"):
        snapshots.snapshot_copy(team=acme, actor=alice, snapshot=saving, name=notebook.name)
    assert Notebook.objects.for_team(acme).count() == 1


def test_only_the_newest_ready_snapshots_are_kept(acme, alice, media, queued, settings):
    settings.LATTICE_SNAPSHOT_KEEP = 2
    notebook = hosted(acme, alice)
    made = []
    for n in range(3):
        snapshot, host = take(notebook, queued)
        host.save({**FILES, "n.txt": str(n).encode()})
        made.append(snapshot.pk)

    kept = NotebookSnapshot.objects.for_team(acme).filter(notebook=notebook)
    assert sorted(kept.values_list("pk", flat=True)) == made[1:]
    latest = snapshots.snapshot_latest(notebook)
    assert latest is not None
    assert latest.pk == made[-1]
    # The oldest's files went with it (the newest's blobs stay held).
    assert not SnapshotFile.objects.for_team(acme).filter(snapshot_id=made[0]).exists()


def test_a_deleted_notebooks_snapshots_go_and_their_blobs_with_them(acme, alice, media, queued):
    from apps.notebooks import services

    notebook = hosted(acme, alice)
    snapshot, host = take(notebook, queued)
    host.save(FILES)
    _, other_host = take(notebook, queued)

    services.notebook_delete(team=acme, actor=alice, notebook=notebook, confirmation=notebook.name)

    assert not NotebookSnapshot.objects.for_team(acme).exists()
    assert other_host.post("manifest", {"files": []}).status_code == 403
    assert blobs_collect(now=snapshot.created_at + timedelta(days=1)) == len(FILES)


def test_a_snapshot_keeps_any_posix_name_exactly_and_refuses_a_path_out(acme, alice, media, queued):
    """A snapshot's manifest takes the names a Linux volume may hold (review 20 R3: no
    portable-name rule, no NFC), and still refuses a path that is not inside the volume."""
    odd = {
        "notes\\draft.txt": b"1",
        "aux.py": b"2",
        "draft.": b"3",
        "line\nbreak.txt": b"4",
        "README.md": b"5",
        "readme.md": b"6",
        "cafe\u0301.txt": b"7",
        "caf\u00e9.txt": b"8",
    }
    snapshot, host = take(hosted(acme, alice), queued)
    host.save(odd)
    snapshot.refresh_from_db()
    assert snapshot.state == NotebookSnapshot.State.READY, snapshot.failure
    assert set(stored(snapshot)) == set(odd)

    for path in ["../out.txt", "a/./b", "/etc/passwd", "a//b", "nul\x00.txt"]:
        other, played = take(hosted(acme, alice, f"Other {len(path)}"), queued)
        answer = played.manifest({path: b"x"})
        assert answer.status_code == 400, path
        other.refresh_from_db()
        assert other.state == NotebookSnapshot.State.FAILED, path
