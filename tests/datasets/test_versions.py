"""Datasets: versions over content-addressed blobs, resumable chunked uploads, downloads,
and bad input refused with a clear 4xx that writes nothing outside its place."""

from __future__ import annotations

import io
import json
import tarfile
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from django.utils import timezone

from apps.core.tenancy import team_scope
from apps.datasets import upkeep
from apps.datasets.models import Blob, DatasetVersion, Upload, blob_key
from apps.datasets.services import dataset_create
from tests.dataset_fixtures import sha
from tests.notebook_fixtures import make_notebook

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.django_db

CHUNK = 4  # bytes: small files make several chunks


@pytest.fixture
def cats(acme, alice, media):
    with team_scope(acme):
        return dataset_create(team=acme, actor=alice, name="Cats")


@pytest.fixture
def api(client, alice):
    client.force_login(alice)
    return client


def base(team) -> str:
    return f"/api/v1/teams/{team.slug}"


def start(api, team, slug, files: dict[str, bytes], message="") -> dict:
    manifest = [{"path": p, "size": len(b), "sha256": sha(b)} for p, b in files.items()]
    response = api.post(
        f"{base(team)}/datasets/{slug}/uploads/",
        {"message": message, "files": manifest},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    return response.json()


def put_chunk(api, team, upload_id, data: bytes, index: int, *, checksum: str | None = None):
    piece = data[index * CHUNK : (index + 1) * CHUNK]
    return api.put(
        f"{base(team)}/uploads/{upload_id}/blobs/{sha(data)}/chunks/{index}/",
        data=piece,
        content_type="application/octet-stream",
        HTTP_X_CHUNK_SHA256=checksum or sha(piece),
    )


def send_all(api, team, upload: dict, files: dict[str, bytes]) -> int:
    by_sha = {sha(b): b for b in files.values()}
    sent = 0
    for blob in upload["blobs"]:
        for index in blob["missing"]:
            assert (
                put_chunk(api, team, upload["id"], by_sha[blob["sha256"]], index).status_code == 204
            )
            sent += 1
    return sent


def complete(api, team, upload_id):
    return api.post(f"{base(team)}/uploads/{upload_id}/complete/", content_type="application/json")


def blob_files(media: Path) -> list[Path]:
    return sorted(p for p in (media / "datasets" / "blobs").rglob("*") if p.is_file())


class TestVersions:
    def test_version_2_uploads_only_the_changed_file(
        self, api, acme, cats, media, django_capture_on_commit_callbacks
    ):
        v1 = {"a.txt": b"alpha alpha", "b/c.txt": b"bravo charlie", "d.bin": b"\x00\x01" * 9}
        upload = start(api, acme, "cats", v1, "first")
        assert send_all(api, acme, upload, v1) == 3 + 4 + 5
        assert complete(api, acme, upload["id"]).json()["number"] == 1

        v2 = {**v1, "b/c.txt": b"bravo CHANGED"}
        upload = start(api, acme, "cats", v2, "second")

        assert [b["sha256"] for b in upload["blobs"]] == [sha(b"bravo CHANGED")]
        assert upload["new_bytes"] == len(b"bravo CHANGED")
        assert send_all(api, acme, upload, v2) == 4
        with django_capture_on_commit_callbacks(execute=True):
            version = complete(api, acme, upload["id"]).json()
        assert version["number"] == 2
        assert version["file_count"] == 3
        assert Blob.objects.count() == 4  # each distinct content once
        assert len(blob_files(media)) == 4
        # Nothing of the finished upload is left: no part file, no manifest.
        assert not list((media / "datasets" / "uploads" / str(upload["id"])).glob("*"))

    def test_the_same_bytes_in_two_files_are_stored_once(self, api, acme, cats, media):
        files = {"x/one.txt": b"same bytes!", "y/two.txt": b"same bytes!"}
        upload = start(api, acme, "cats", files)
        assert len(upload["blobs"]) == 1
        send_all(api, acme, upload, files)
        assert complete(api, acme, upload["id"]).status_code == 201
        assert len(blob_files(media)) == 1

    def test_an_interrupted_upload_resumes_with_only_the_missing_chunks(
        self, api, acme, cats, media
    ):
        data = b"0123456789abcdef!"  # 5 chunks of 4 bytes
        upload = start(api, acme, "cats", {"big.bin": data})
        for index in (0, 3):  # then the connection drops
            assert put_chunk(api, acme, upload["id"], data, index).status_code == 204

        resumed = api.get(f"{base(acme)}/uploads/{upload['id']}/").json()

        assert resumed["blobs"][0]["missing"] == [1, 2, 4]
        for index in resumed["blobs"][0]["missing"]:
            assert put_chunk(api, acme, upload["id"], data, index).status_code == 204
        assert complete(api, acme, upload["id"]).status_code == 201
        assert (blob_files(media)[0]).read_bytes() == data

    def test_a_chunk_sent_twice_is_kept_once(self, api, acme, cats, media):
        data = b"abcdefgh"
        upload = start(api, acme, "cats", {"f": data})
        assert put_chunk(api, acme, upload["id"], data, 0).status_code == 204
        assert put_chunk(api, acme, upload["id"], data, 0).status_code == 204
        assert put_chunk(api, acme, upload["id"], data, 1).status_code == 204
        assert complete(api, acme, upload["id"]).status_code == 201
        assert blob_files(media)[0].read_bytes() == data

    def test_an_empty_file_needs_no_chunks(self, api, acme, cats, media):
        upload = start(api, acme, "cats", {"empty": b""})
        assert upload["blobs"][0]["missing"] == []
        assert complete(api, acme, upload["id"]).status_code == 201

    def test_an_identical_folder_makes_no_new_version_unless_asked(self, api, acme, cats, media):
        files = {"a.txt": b"same bytes", "sub/b.txt": b"more"}
        first = start(api, acme, "cats", files)
        send_all(api, acme, first, files)
        assert complete(api, acme, first["id"]).status_code == 201

        again = start(api, acme, "cats", files)
        assert again["new_bytes"] == 0
        refused = complete(api, acme, again["id"])

        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["code"] == "identical_version"
        assert error["message"].startswith("These files are identical to v1")
        ready = DatasetVersion.objects.for_team(acme).filter(status="ready")
        assert list(ready.values_list("number", flat=True)) == [1]
        # The upload stays open: asked explicitly, the same upload makes v2.
        made = api.post(
            f"{base(acme)}/uploads/{again['id']}/complete/",
            {"allow_identical": True},
            content_type="application/json",
        )
        assert made.status_code == 201, made.content
        assert made.json()["number"] == 2

    def test_a_changed_name_is_a_new_version(self, api, acme, cats, media):
        files = {"a.txt": b"same bytes"}
        first = start(api, acme, "cats", files)
        send_all(api, acme, first, files)
        assert complete(api, acme, first["id"]).status_code == 201

        renamed = start(api, acme, "cats", {"b.txt": b"same bytes"})

        assert complete(api, acme, renamed["id"]).status_code == 201


class TestDownloads:
    @pytest.fixture
    def version(self, api, acme, cats):
        files = {"a.txt": b"alpha alpha", "b/c.txt": b"bravo charlie"}
        upload = start(api, acme, "cats", files)
        send_all(api, acme, upload, files)
        complete(api, acme, upload["id"])
        return files

    def test_a_single_file(self, api, acme, version):
        response = api.get(f"{base(acme)}/datasets/cats/versions/1/files/b/c.txt")
        assert response.status_code == 200
        assert b"".join(response.streaming_content) == b"bravo charlie"

    def test_the_files_of_a_version(self, api, acme, version):
        body = api.get(f"{base(acme)}/datasets/cats/versions/1/files/").json()
        assert [(f["path"], f["size"]) for f in body["results"]] == [("a.txt", 11), ("b/c.txt", 13)]

    def test_a_whole_version_as_a_tar_stream(self, api, acme, version):
        response = api.get(f"{base(acme)}/datasets/cats/versions/1/archive/")
        with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content))) as archive:
            members = {m.name: archive.extractfile(m) for m in archive.getmembers()}
            contents = {name: f.read() for name, f in members.items() if f is not None}
        assert contents == {
            "cats-v1/a.txt": b"alpha alpha",
            "cats-v1/b/c.txt": b"bravo charlie",
        }

    def test_another_team_gets_404(self, client, charlie, acme, version):
        client.force_login(charlie)
        archive = client.get(f"{base(acme)}/datasets/cats/versions/1/archive/")
        file = client.get(f"{base(acme)}/datasets/cats/versions/1/files/b/c.txt")
        assert archive.status_code == 404
        assert client.get(f"{base(acme)}/datasets/cats/versions/1/files/a.txt").status_code == 404
        assert file.status_code == 404
        assert b"bravo charlie" not in archive.content + file.content


BAD_PATHS = {
    "../escape.txt": "'.' and '..' parts",
    "a/../../escape.txt": "'.' and '..' parts",
    "/etc/passwd": "remove the leading /",
    "a\\b.txt": "not backslashes",
    "nul\x00.txt": "NUL",
    "x" * 256: "at most 255 bytes",
    "/".join(["d" * 200] * 6): "at most 1024 bytes",
    "bad\ud800name": "not valid UTF-8",
    "a//b": "'.' and '..' parts",
    "tab\tname": "control characters",
}


class TestBadInput:
    @pytest.mark.parametrize(("path", "reason"), list(BAD_PATHS.items()))
    def test_a_bad_path_is_refused_and_writes_nothing(self, api, acme, cats, media, path, reason):
        body = json.dumps({"files": [{"path": path, "size": 1, "sha256": sha(b"x")}]})
        response = api.post(
            f"{base(acme)}/datasets/cats/uploads/", data=body, content_type="application/json"
        )
        assert response.status_code == 400
        assert reason in json.dumps(response.json()["error"]["fields"]["files"], ensure_ascii=False)
        assert Upload.objects.for_team(acme).count() == 0
        assert not (media.parent / "escape.txt").exists()

    def test_a_body_that_is_not_utf8_is_refused(self, api, acme, cats):
        response = api.post(
            f"{base(acme)}/datasets/cats/uploads/",
            data=b'{"files": [{"path": "caf\xe9", "size": 1, "sha256": "00"}]}',
            content_type="application/json",
        )
        assert response.status_code == 400
        assert Upload.objects.for_team(acme).count() == 0

    def test_duplicate_paths(self, api, acme, cats):
        entry = {"path": "a.txt", "size": 1, "sha256": sha(b"x")}
        response = api.post(
            f"{base(acme)}/datasets/cats/uploads/",
            {"files": [entry, entry]},
            content_type="application/json",
        )
        assert response.status_code == 400
        assert "a.txt is listed twice." in response.json()["error"]["fields"]["files"]

    def test_a_path_both_file_and_folder(self, api, acme, cats):
        files = [
            {"path": "a", "size": 1, "sha256": sha(b"x")},
            {"path": "a/b", "size": 1, "sha256": sha(b"y")},
        ]
        response = api.post(
            f"{base(acme)}/datasets/cats/uploads/",
            {"files": files},
            content_type="application/json",
        )
        assert response.status_code == 400
        assert "a is both a file and a folder." in response.json()["error"]["fields"]["files"]

    def test_a_damaged_chunk_is_refused_and_not_kept(self, api, acme, cats, media):
        data = b"abcdefgh"
        upload = start(api, acme, "cats", {"f": data})

        response = put_chunk(api, acme, upload["id"], data, 0, checksum=sha(b"other"))

        assert response.status_code == 400
        assert "arrived damaged" in response.json()["error"]["message"]
        # Its own code, so a client knows to send it again (any other 400 is "invalid").
        assert response.json()["error"]["code"] == "chunk_damaged"
        assert api.get(f"{base(acme)}/uploads/{upload['id']}/").json()["blobs"][0]["missing"] == [
            0,
            1,
        ]
        # Its bytes are in the part file, but not counted: the chunk is missing until resent.

    def test_a_chunk_of_the_wrong_length_is_refused(self, api, acme, cats):
        data = b"abcdefgh"
        upload = start(api, acme, "cats", {"f": data})
        response = api.put(
            f"{base(acme)}/uploads/{upload['id']}/blobs/{sha(data)}/chunks/0/",
            data=b"abcdefg",
            content_type="application/octet-stream",
            HTTP_X_CHUNK_SHA256=sha(b"abcdefg"),
        )
        assert response.status_code == 400
        assert "Chunk 0 is 4 bytes" in response.json()["error"]["message"]

    def test_complete_with_chunks_missing_makes_nothing(self, api, acme, cats):
        data = b"abcdefgh"
        upload = start(api, acme, "cats", {"f": data})
        put_chunk(api, acme, upload["id"], data, 0)

        response = complete(api, acme, upload["id"])

        assert response.status_code == 400
        assert "1 chunk of 1 file still to send" in response.json()["error"]["message"]
        assert Blob.objects.count() == 0
        assert DatasetVersion.objects.for_team(acme).filter(status="ready").count() == 0

    def test_a_second_complete_is_a_conflict(self, api, acme, cats):
        data = b"abcd"
        upload = start(api, acme, "cats", {"f": data})
        send_all(api, acme, upload, {"f": data})
        assert complete(api, acme, upload["id"]).status_code == 201

        again = complete(api, acme, upload["id"])

        assert again.status_code == 409
        assert DatasetVersion.objects.for_team(acme).filter(status="ready").count() == 1

    def test_an_upload_past_the_quota_is_refused_up_front(self, api, acme, cats, stripe_double):
        files = [{"path": "huge.bin", "size": 6 * 1024**3, "sha256": sha(b"huge")}]

        response = api.post(
            f"{base(acme)}/datasets/cats/uploads/",
            {"files": files},
            content_type="application/json",
        )

        assert response.status_code == 402
        error = response.json()["error"]
        assert error["code"] == "plan_storage"
        assert "has 5.00 GiB free; this needs 6.00 GiB" in error["message"]
        assert Upload.objects.for_team(acme).count() == 0

    def test_bytes_another_open_upload_holds_count_once(self, api, acme, cats, stripe_double):
        """Free has 5 GiB: 3 GiB waiting in one open upload, and the same file in a second
        upload, fit (the team holds it once); the quota message counts it once too."""
        files = [{"path": "big.bin", "size": 3 * 1024**3, "sha256": sha(b"big")}]
        first = api.post(
            f"{base(acme)}/datasets/cats/uploads/",
            {"files": files},
            content_type="application/json",
        )
        again = api.post(
            f"{base(acme)}/datasets/cats/uploads/",
            {"files": files},
            content_type="application/json",
        )

        assert first.status_code == 201
        assert again.status_code == 201, again.content
        with team_scope(acme):
            assert Upload.objects.filter(status=Upload.Status.OPEN).count() == 2

    def test_a_viewer_cannot_upload(self, client, acme, cats, erin):
        client.force_login(erin)
        response = client.post(
            f"{base(acme)}/datasets/cats/uploads/",
            {"files": [{"path": "a", "size": 1, "sha256": sha(b"a")}]},
            content_type="application/json",
        )
        assert response.status_code == 403
        with team_scope(acme):
            assert not Upload.objects.exists()


class TestHousekeeping:
    def test_blobs_nothing_holds_are_deleted_shared_ones_kept(self, api, acme, alice, cats, media):
        with team_scope(acme):
            dogs = dataset_create(team=acme, actor=alice, name="Dogs")
        shared, own = b"shared bytes", b"only in cats"
        for slug, files in (("cats", {"s": shared, "o": own}), (dogs.slug, {"s": shared})):
            upload = start(api, acme, slug, files)
            send_all(api, acme, upload, files)
            assert complete(api, acme, upload["id"]).status_code == 201

        refused = api.delete(f"{base(acme)}/datasets/cats/?confirm=Dogs")
        assert refused.status_code == 400
        assert api.delete(f"{base(acme)}/datasets/cats/?confirm=Cats").status_code == 204
        assert upkeep.blobs_collect() == 0  # an hour's grace for blobs just made
        later = timezone.now() + timedelta(hours=2)

        assert upkeep.blobs_collect(now=later) == 1

        assert set(Blob.objects.values_list("sha256", flat=True)) == {sha(shared)}
        assert blob_files(media) == [media / blob_key(sha(shared))]

    def test_a_blob_an_open_upload_relies_on_is_kept(self, api, acme, alice, cats, media):
        with team_scope(acme):
            dogs = dataset_create(team=acme, actor=alice, name="Dogs")
        files = {"a": b"kept for the other dataset"}
        upload = start(api, acme, "cats", files)
        send_all(api, acme, upload, files)
        complete(api, acme, upload["id"])
        relying = start(api, acme, dogs.slug, files)  # nothing to send: the blob is there
        assert relying["blobs"] == []
        api.delete(f"{base(acme)}/datasets/cats/?confirm=Cats")

        assert upkeep.blobs_collect(now=timezone.now() + timedelta(hours=2)) == 0
        assert complete(api, acme, relying["id"]).status_code == 201

    def test_an_upload_left_a_week_is_abandoned_and_its_chunks_go(self, api, acme, cats, media):
        data = b"abcdefgh"
        upload = start(api, acme, "cats", {"f": data})
        put_chunk(api, acme, upload["id"], data, 0)
        part = media / "datasets" / "uploads" / str(upload["id"]) / f"{sha(data)}.part"
        assert part.exists()

        assert upkeep.uploads_abandon(now=timezone.now() + timedelta(days=3)) == 0
        assert upkeep.uploads_abandon(now=timezone.now() + timedelta(days=8)) == 1

        assert not part.exists()
        assert Upload.objects.for_team(acme).get().status == "abandoned"
        assert complete(api, acme, upload["id"]).status_code == 409


def test_deleting_a_public_dataset_others_mount_takes_their_mounts(
    api, acme, cats, media, globex, charlie, catalogue
):
    from apps.notebooks.models import NotebookMount
    from apps.notebooks.mounts import mount_add

    files = {"a.txt": b"public bytes"}
    upload = start(api, acme, "cats", files)
    send_all(api, acme, upload, files)
    complete(api, acme, upload["id"])
    with team_scope(acme):
        cats.visibility = "public"
        cats.save()
        version = DatasetVersion.objects.get(dataset=cats, number=1)
    with team_scope(globex):
        notebook = make_notebook(globex, charlie, "Theirs")
        mount_add(team=globex, actor=charlie, notebook=notebook, version=version)

    assert api.delete(f"{base(acme)}/datasets/cats/?confirm=Cats").status_code == 204

    assert NotebookMount.objects.for_team(globex).count() == 0


def test_a_notebooks_datasets_through_the_api(api, acme, alice, cats, media, catalogue):

    files = {"a.txt": b"mounted bytes"}
    upload = start(api, acme, "cats", files)
    send_all(api, acme, upload, files)
    complete(api, acme, upload["id"])
    with team_scope(acme):
        version = DatasetVersion.objects.get(dataset=cats, number=1)
        notebook = make_notebook(acme, alice, "Uses cats")
    url = f"{base(acme)}/notebooks/{notebook.pk}/datasets/"

    made = api.post(url, {"version": version.pk}, content_type="application/json")

    assert made.status_code == 201
    assert made.json()["path"] == "/datasets/cats"
    assert made.json()["dataset"] == "acme/cats"
    assert [m["name"] for m in api.get(url).json()] == ["cats"]
    unknown = api.post(url, {"version": 999999}, content_type="application/json")
    assert unknown.status_code == 404
    again = api.post(url, {"version": version.pk}, content_type="application/json")
    assert again.status_code == 409
    assert api.delete(f"{url}{made.json()['id']}/").status_code == 204
    assert api.get(url).json() == []


def test_a_free_team_makes_public_datasets_only(api, acme, stripe_double, media):
    private = api.post(
        f"{base(acme)}/datasets/", {"name": "Secret"}, content_type="application/json"
    )
    assert private.status_code == 402
    assert private.json()["error"]["code"] == "plan_private_datasets"
    assert "Upgrade to Pro or Growth for private ones." in private.json()["error"]["message"]

    public = api.post(
        f"{base(acme)}/datasets/",
        {"name": "Open", "visibility": "public"},
        content_type="application/json",
    )
    assert public.status_code == 201


def test_the_page_says_a_free_team_keeps_datasets_public(client, alice, acme, stripe_double, media):
    client.force_login(alice)

    response = client.post(f"/t/{acme.slug}/datasets/", {"name": "Secret", "visibility": "private"})

    assert response.status_code == 402
    page = response.content.decode()
    assert "On the Free plan datasets are public." in page
    assert 'class="upgrade-link"' in page


def test_a_chunk_overwritten_by_a_bad_resend_is_named_at_complete(api, acme, cats, media):
    data = b"abcdefghijkl"  # 3 chunks
    upload = start(api, acme, "cats", {"f": data})
    send_all(api, acme, upload, {"f": data})
    # Two sends of chunk 1 at once: the bad one's bytes land after the good one was counted.
    part = media / "datasets" / "uploads" / str(upload["id"]) / f"{sha(data)}.part"
    with part.open("r+b") as f:
        f.seek(4)
        f.write(b"XXXX")

    response = complete(api, acme, upload["id"])

    assert response.status_code == 400
    assert "send chunk 1 of it again" in response.json()["error"]["message"]
    assert api.get(f"{base(acme)}/uploads/{upload['id']}/").json()["blobs"][0]["missing"] == [1]
    assert put_chunk(api, acme, upload["id"], data, 1).status_code == 204
    assert complete(api, acme, upload["id"]).status_code == 201
    assert blob_files(media)[0].read_bytes() == data


def test_a_file_too_big_for_ten_thousand_chunks_gets_larger_chunks(api, acme, cats, settings):
    """S3 takes at most 10,000 parts in a multipart upload: a 400 GiB file cannot go in
    32 MiB chunks (12,800), so its upload's chunks are the next whole MiB that fits."""
    settings.LATTICE_UPLOAD_CHUNK_BYTES = 32 * 1024 * 1024
    big = 400 * 1024**3
    manifest = [{"path": "huge.bin", "size": big, "sha256": "b" * 64}]
    response = api.post(
        f"{base(acme)}/datasets/{cats.slug}/uploads/",
        {"message": "", "files": manifest},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    upload = response.json()
    assert upload["chunk_size"] == 41 * 1024 * 1024
    assert upload["blobs"][0]["chunk_count"] == 9_991
    small = [{"path": "small.bin", "size": 1000, "sha256": "c" * 64}]
    response = api.post(
        f"{base(acme)}/datasets/{cats.slug}/uploads/",
        {"message": "", "files": small},
        content_type="application/json",
    )
    assert response.json()["chunk_size"] == 32 * 1024 * 1024


def test_a_damaged_file_among_good_ones_moves_none_and_the_resend_completes(api, acme, cats, media):
    """Every file is checked before any is stored: the good files' bytes stay where a
    second complete finds them, and nothing is half made in between."""
    files = {"a": b"abcdefghijkl", "b": b"mnopqrstuvwx", "c": b"0123456789"}
    upload = start(api, acme, "cats", files)
    send_all(api, acme, upload, files)
    part = media / "datasets" / "uploads" / str(upload["id"]) / f"{sha(files['b'])}.part"
    with part.open("r+b") as f:
        f.seek(4)
        f.write(b"XXXX")

    response = complete(api, acme, upload["id"])

    assert response.status_code == 400
    assert "send chunk 1 of it again" in response.json()["error"]["message"]
    assert blob_files(media) == []
    with team_scope(acme):
        assert not Blob.objects.exists()
        assert not DatasetVersion.objects.filter(status=DatasetVersion.Status.READY).exists()
    assert put_chunk(api, acme, upload["id"], files["b"], 1).status_code == 204
    assert complete(api, acme, upload["id"]).status_code == 201
    assert sorted(p.read_bytes() for p in blob_files(media)) == sorted(files.values())


def test_an_upload_of_100000_files_starts_and_one_more_is_refused_by_the_count(api, acme, cats):
    # 10 MB of JSON, past Django's 2.5 MiB body limit: the upload start reads it itself.
    entry = {"size": 1, "sha256": sha(b"x")}
    files = [{**entry, "path": f"shard/{i:06d}"} for i in range(100_001)]

    response = api.post(
        f"{base(acme)}/datasets/cats/uploads/",
        json.dumps({"files": files[:100_000]}),
        content_type="application/json",
    )
    assert response.status_code == 201, response.content[:300]
    assert response.json()["blobs"][0]["sha256"] == sha(b"x")

    response = api.post(
        f"{base(acme)}/datasets/cats/uploads/",
        json.dumps({"files": files}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "at most 100,000 files" in json.dumps(response.json()["error"]["fields"]["files"])
