"""The models API (/api/v1/teams/<team>/models/...): models, versions over datasets' upload
protocol, identical content found again, hostile manifests refused with nothing stored,
aliases moved atomically, downloads, diffs, and who may do what (roles, token scopes,
other teams)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading
import time
import unicodedata
from typing import TYPE_CHECKING, Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from rest_framework.test import APIClient

from apps.accounts.tokens import token_create
from apps.core.api.parsers import ManifestJSONParser
from apps.core.models import AuditEntry
from apps.datasets.models import Blob, Upload, UploadBlob, UploadChunk
from apps.models.hooks import source_link, version_servers
from apps.models.models import Model, ModelAlias, ModelFile, ModelVersion
from apps.teams.models import Role
from tests.dataset_fixtures import make_version, sha
from tests.factories import TeamFactory, add_member

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.django_db

CHUNK = 4  # bytes: small files make several chunks

FILES = {
    "model.pkl": b"weights-0123456789",
    "predict.py": b"def predict(x):\n    return x\n",
    "conf/params.json": b'{"depth": 3}',
}


def base(team: Any) -> str:
    return f"/api/v1/teams/{team.slug}"


def manifest(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [{"path": p, "size": len(d), "sha256": sha(d)} for p, d in files.items()]


@pytest.fixture
def api(alice: Any) -> APIClient:
    client = APIClient()
    client.force_login(alice)
    return client


@pytest.fixture
def iris(api: APIClient, acme: Any, media: Path) -> dict[str, Any]:
    response = api.post(f"{base(acme)}/models/", {"name": "Iris", "licence": "MIT"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def start(api: APIClient, team: Any, slug: str, files: dict[str, bytes], **fields: Any) -> Any:
    return api.post(
        f"{base(team)}/models/{slug}/versions/",
        {"files": manifest(files), **fields},
        format="json",
    )


def send_all(api: APIClient, team: Any, upload: dict[str, Any], files: dict[str, bytes]) -> int:
    """PUT every missing chunk of the upload; how many were sent."""
    by_sha = {sha(d): d for d in files.values()}
    sent = 0
    for blob in upload["blobs"]:
        data = by_sha[blob["sha256"]]
        for index in blob["missing"]:
            piece = data[index * CHUNK : (index + 1) * CHUNK]
            response = api.put(
                f"{base(team)}/model-uploads/{upload['id']}/blobs/{blob['sha256']}/chunks/{index}/",
                data=piece,
                content_type="application/octet-stream",
                HTTP_X_CHUNK_SHA256=sha(piece),
            )
            assert response.status_code == 204, response.content
            sent += 1
    return sent


def upload_version(
    api: APIClient, team: Any, slug: str, files: dict[str, bytes], **fields: Any
) -> tuple[dict[str, Any], int]:
    """A version of ``files`` through the API: (the version's body, chunks sent)."""
    started = start(api, team, slug, files, **fields)
    if started.status_code == 200:
        assert started.json()["existing"] is True
        return started.json()["version"], 0
    assert started.status_code == 201, started.content
    upload = started.json()
    sent = send_all(api, team, upload, files)
    done = api.post(f"{base(team)}/model-uploads/{upload['id']}/complete/", format="json")
    assert done.status_code == 201, done.content
    return done.json(), sent


def blob_files(media: Path) -> list[Path]:
    return sorted(p for p in media.rglob("*") if p.is_file()) if media.exists() else []


# --- models -------------------------------------------------------------------------------


class TestModels:
    def test_made_listed_changed_and_deleted_with_its_name_typed(self, api, acme, iris):
        assert iris["slug"] == "iris"
        assert (iris["latest_version"], iris["aliases"], iris["licence"]) == (None, {}, "MIT")
        upload_version(api, acme, "iris", FILES)
        api.put(f"{base(acme)}/models/iris/aliases/production/", {"version": 1}, format="json")

        listed = api.get(f"{base(acme)}/models/").json()["results"]
        assert [(m["name"], m["latest_version"], m["aliases"]) for m in listed] == [
            ("Iris", 1, {"production": 1})
        ]
        taken = api.post(f"{base(acme)}/models/", {"name": "iris"}, format="json")
        assert taken.status_code == 409

        renamed = api.patch(f"{base(acme)}/models/iris/", {"name": "Iris Two"}, format="json")
        assert renamed.status_code == 200
        assert renamed.json()["slug"] == "iris-two"
        assert api.get(f"{base(acme)}/models/iris/").status_code == 404

        unconfirmed = api.delete(f"{base(acme)}/models/iris-two/")
        assert unconfirmed.status_code == 400
        assert unconfirmed.json()["error"]["fields"]["confirmation"] == [
            "Type the model's name, Iris Two, to delete it."
        ]
        assert api.delete(f"{base(acme)}/models/iris-two/?confirm=Iris Two").status_code == 204
        assert Model.objects.for_team(acme).count() == 0
        # Its versions and aliases went with it: no alias names a version that is gone.
        assert ModelVersion.objects.for_team(acme).count() == 0
        assert ModelAlias.objects.for_team(acme).count() == 0
        assert AuditEntry.objects.for_team(acme).filter(action="model.deleted").count() == 1


# --- versions: the same content, one changed byte -----------------------------------------


class TestVersions:
    def test_identical_content_twice_is_the_same_version(self, api, acme, iris):
        first, sent = upload_version(api, acme, "iris", FILES)
        assert (first["number"], first["status"], sent) == (1, "ready", 5 + 8 + 3)

        # The same files, listed in another order: the version that holds them, nothing made.
        again = start(api, acme, "iris", dict(reversed(FILES.items())), message="again")
        assert again.status_code == 200
        assert again.json()["existing"] is True
        assert again.json()["version"]["number"] == 1
        assert again.json()["version"]["digest"] == first["digest"]
        assert ModelVersion.objects.for_team(acme).count() == 1
        assert Upload.objects.for_team(acme).filter(purpose="model").count() == 1

    def test_one_changed_byte_is_a_new_version_that_shares_the_unchanged_files(
        self, api, acme, iris, media
    ):
        upload_version(api, acme, "iris", FILES)
        blobs, stored = Blob.objects.count(), len(blob_files(media / "datasets" / "blobs"))
        assert blobs == 3

        changed = dict(FILES, **{"model.pkl": b"weights-0123456788"})
        started = start(api, acme, "iris", changed)
        assert started.status_code == 201
        # Only the changed file is asked for.
        assert [b["sha256"] for b in started.json()["blobs"]] == [sha(changed["model.pkl"])]
        assert send_all(api, acme, started.json(), changed) == 5
        done = api.post(f"{base(acme)}/model-uploads/{started.json()['id']}/complete/")
        assert done.status_code == 201
        assert done.json()["number"] == 2

        assert Blob.objects.count() == blobs + 1
        assert len(blob_files(media / "datasets" / "blobs")) == stored + 1
        for path in ("predict.py", "conf/params.json"):
            rows = ModelFile.objects.for_team(acme).filter(path=path)
            assert rows.count() == 2
            assert rows.values("blob_id").distinct().count() == 1

    def test_a_version_by_number_alias_or_latest_with_its_files_and_lineage(
        self, api, acme, iris, media
    ):
        cats = make_version(acme, "Cats", {"a.csv": b"1,2\n"})
        parent, _ = upload_version(api, acme, "iris", FILES)
        child, _ = upload_version(
            api,
            acme,
            "iris",
            {"model.pkl": b"fine-tuned"},
            format="sklearn",
            message="tuned",
            metadata={"accuracy": 0.97},
            io_schema={"inputs": [{"name": "x", "type": "float"}]},
            dataset_versions=[{"dataset": "cats", "version": 1}],
            parent=1,
        )
        api.put(f"{base(acme)}/models/iris/aliases/staging/", {"version": 2}, format="json")

        def served(team, version):
            return [("web", "/deployments/1/")] if version.number == 2 else []

        def came_from(team, version):
            return ("Notebook Train", "/t/acme/nb/1/") if version.number == 2 else None

        with version_servers.override(served), source_link.override(came_from):
            by = {
                ref: api.get(f"{base(acme)}/models/iris/versions/{ref}/").json()
                for ref in ("2", "staging", "latest")
            }
        assert by["2"] == by["staging"] == by["latest"]
        body = by["2"]
        assert (body["number"], body["format"], body["message"]) == (2, "sklearn", "tuned")
        assert body["metadata"] == {"accuracy": 0.97}
        assert body["io_schema"] == {"inputs": [{"name": "x", "type": "float"}]}
        assert body["files"] == [{"path": "model.pkl", "size": 10, "sha256": sha(b"fine-tuned")}]
        assert body["aliases"] == ["staging"]
        assert body["servers"] == [{"text": "web", "url": "/deployments/1/"}]
        lineage = body["lineage"]
        assert lineage["link"] == {"text": "Notebook Train", "url": "/t/acme/nb/1/"}
        assert lineage["parent"] == {"model": "iris", "number": 1}
        assert lineage["dataset_versions"] == [
            {
                "id": cats.pk,
                "team": "acme",
                "dataset": "cats",
                "name": "Cats",
                "number": 1,
                "label": "Cats v1",
                "deleted": False,
            }
        ]
        first = api.get(f"{base(acme)}/models/iris/versions/1/").json()
        assert first["lineage"]["children"] == [{"model": "iris", "number": 2}]
        assert first["servers"] == []
        assert [
            v["number"] for v in api.get(f"{base(acme)}/models/iris/versions/").json()["results"]
        ] == [2, 1]
        assert (parent["number"], child["number"]) == (1, 2)
        for missing in ("3", "production", "0"):
            assert api.get(f"{base(acme)}/models/iris/versions/{missing}/").status_code == 404

    def test_a_dataset_version_the_team_cannot_read_is_refused(
        self, api, acme, globex, iris, media
    ):
        theirs = make_version(globex, "Secret", {"s.csv": b"x"})
        for ref in (theirs.pk, {"team": "globex", "dataset": "secret", "version": 1}):
            response = start(api, acme, "iris", FILES, dataset_versions=[ref])
            assert response.status_code == 400
            assert "dataset_versions" in response.json()["error"]["fields"]
        assert ModelVersion.objects.for_team(acme).count() == 0
        assert Upload.objects.for_team(acme).count() == 0


# --- hostile manifests ----------------------------------------------------------------------

_X = sha(b"x")
_CAFE_NFC = unicodedata.normalize("NFC", "café.bin")
_CAFE_NFD = unicodedata.normalize("NFD", "café.bin")
HOSTILE: dict[str, tuple[object, str]] = {
    "traversal": ([{"path": "../escape.txt", "size": 1, "sha256": _X}], "'.' and '..' parts"),
    "deep traversal": (
        [{"path": "a/../../escape.txt", "size": 1, "sha256": _X}],
        "'.' and '..' parts",
    ),
    "absolute": ([{"path": "/etc/passwd", "size": 1, "sha256": _X}], "remove the leading /"),
    "backslash": ([{"path": "..\\escape.txt", "size": 1, "sha256": _X}], "not backslashes"),
    "twice": (
        [{"path": "a.bin", "size": 1, "sha256": _X}, {"path": "a.bin", "size": 1, "sha256": _X}],
        "a.bin is listed twice",
    ),
    "case": (
        [
            {"path": "Model.bin", "size": 1, "sha256": _X},
            {"path": "model.bin", "size": 1, "sha256": _X},
        ],
        "are one name where case or the Unicode form of letters is ignored",
    ),
    "unicode form": (
        [
            {"path": _CAFE_NFC, "size": 1, "sha256": _X},
            {"path": _CAFE_NFD, "size": 1, "sha256": _X},
        ],
        "are one name where case or the Unicode form of letters is ignored",
    ),
    "file and folder": (
        [
            {"path": "weights", "size": 1, "sha256": _X},
            {"path": "weights/a", "size": 1, "sha256": _X},
        ],
        "weights is both a file and a folder",
    ),
    "negative size": ([{"path": "a.bin", "size": -1, "sha256": _X}], "size is a whole number"),
    "size as text": ([{"path": "a.bin", "size": "1", "sha256": _X}], "size is a whole number"),
    "short hash": ([{"path": "a.bin", "size": 1, "sha256": "abc"}], "64 lowercase hex digits"),
    "upper-case hash": (
        [{"path": "a.bin", "size": 1, "sha256": _X.upper()}],
        "64 lowercase hex digits",
    ),
    "empty file, other hash": (
        [{"path": "empty", "size": 0, "sha256": _X}],
        "an empty file's sha256 is",
    ),
    "one hash, two sizes": (
        [{"path": "a", "size": 1, "sha256": _X}, {"path": "b", "size": 2, "sha256": _X}],
        "the same sha256 with two sizes",
    ),
    "huge file": (
        [{"path": "a.bin", "size": 6 * 1024**4, "sha256": _X}],
        "a file is at most 5 TiB",
    ),
    "not a list": ({"path": "a.bin"}, "List the version's files"),
    "empty": ([], "List the version's files"),
    "control character": ([{"path": "a\x07.bin", "size": 1, "sha256": _X}], "control characters"),
}


class TestHostileManifests:
    @pytest.mark.parametrize(("files", "reason"), list(HOSTILE.values()), ids=list(HOSTILE))
    def test_refused_naming_the_problem_and_nothing_stored(
        self, api, acme, iris, media, files, reason
    ):
        response = api.post(f"{base(acme)}/models/iris/versions/", {"files": files}, format="json")

        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert reason in json.dumps(error["fields"]["files"], ensure_ascii=False)
        assert_nothing_stored(acme, media)

    def test_100000_files_are_accepted_and_one_more_is_refused_by_the_count(
        self, api, acme, alice, iris, media
    ):
        # 10 MB of JSON, past Django's 2.5 MiB body limit: this view reads it itself.
        files = [{"path": f"f{i:06d}", "size": 1, "sha256": _X} for i in range(100_001)]
        body = json.dumps({"files": files[:100_000]})
        assert len(body) > 2 * settings.DATA_UPLOAD_MAX_MEMORY_SIZE

        response = api.post(
            f"{base(acme)}/models/iris/versions/", data=body, content_type="application/json"
        )
        assert response.status_code == 201, response.content[:300]
        version = ModelVersion.objects.for_team(acme).get(pk=response.json()["version_id"])
        assert version.file_count == 100_000

        response = api.post(
            f"{base(acme)}/models/iris/versions/",
            data=json.dumps({"files": files}),
            content_type="application/json",
        )
        assert response.status_code == 400
        assert "at most 100,000 files" in json.dumps(response.json()["error"]["fields"]["files"])

    def test_a_body_past_the_manifest_limit_is_refused_and_the_global_limit_stays(
        self, api, acme, iris, media, monkeypatch
    ):
        monkeypatch.setattr(ManifestJSONParser, "max_bytes", 1024 * 1024)
        files = [{"path": "p" * 900 + str(i), "size": 1, "sha256": _X} for i in range(2_000)]

        response = api.post(
            f"{base(acme)}/models/iris/versions/",
            data=json.dumps({"files": files}),
            content_type="application/json",
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "request_too_large"
        # Any other view keeps Django's 2.5 MiB.
        response = api.patch(
            f"{base(acme)}/models/iris/",
            data=json.dumps({"description": "x" * 3 * 1024 * 1024}),
            content_type="application/json",
        )
        assert response.status_code == 413
        assert_nothing_stored(acme, media)

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"metadata": ["not", "an", "object"]}, "metadata"),
            ({"metadata": {"big": "x" * 70_000}}, "metadata"),
            ({"io_schema": "text"}, "io_schema"),
            ({"format": "pickle-bomb"}, "format"),
            ({"parent": 7}, "parent"),
            ({"dataset_versions": [999_999]}, "dataset_versions"),
            ({"dataset_versions": ["cats"]}, "dataset_versions"),
        ],
    )
    def test_bad_fields_beside_the_files_are_refused_and_nothing_stored(
        self, api, acme, iris, media, fields, field
    ):
        response = start(api, acme, "iris", FILES, **fields)

        assert response.status_code == 400, response.content
        assert field in response.json()["error"]["fields"]
        assert_nothing_stored(acme, media)


def assert_nothing_stored(team: Any, media: Path) -> None:
    assert ModelVersion.objects.for_team(team).count() == 0
    assert Upload.objects.for_team(team).count() == 0
    assert UploadBlob.objects.for_team(team).count() == 0
    assert UploadChunk.objects.for_team(team).count() == 0
    assert Blob.objects.count() == 0
    assert blob_files(media) == []
    assert not (media.parent / "escape.txt").exists()


# --- aliases ----------------------------------------------------------------------------


class TestAliases:
    def test_set_moved_read_and_removed_each_audited(self, api, acme, iris):
        upload_version(api, acme, "iris", FILES)
        upload_version(api, acme, "iris", {"model.pkl": b"v2"})
        url = f"{base(acme)}/models/iris/aliases/production/"

        assert api.put(url, {"version": 1}, format="json").json()["version"] == 1
        moved = api.put(url, {"version": 2}, format="json")
        assert moved.status_code == 200
        assert (moved.json()["version"], moved.json()["updated_by"]) == (2, "alice@example.com")
        assert api.get(url).json()["version"] == 2
        assert api.delete(url).status_code == 204
        assert api.get(url).status_code == 404
        assert api.delete(url).status_code == 404

        audit = AuditEntry.objects.for_team(acme).filter(action__startswith="model.alias")
        assert [(a.action, a.target, a.data.get("to")) for a in audit.order_by("pk")] == [
            ("model.alias_moved", "Iris@production", "v1"),
            ("model.alias_moved", "Iris@production", "v2"),
            ("model.alias_removed", "Iris@production", None),
        ]

    def test_an_alias_names_only_a_ready_version_of_its_own_model(self, api, acme, iris):
        upload_version(api, acme, "iris", FILES)
        api.post(f"{base(acme)}/models/", {"name": "Other"}, format="json")
        upload_version(api, acme, "other", {"x.bin": b"other"})
        # One still uploading has no number; 2 does not exist; "latest" is reserved.
        start(api, acme, "iris", {"model.pkl": b"pending"})

        for name, number, field in (
            ("production", 2, "version"),
            ("production", 0, "version"),
            ("latest", 1, "name"),
            ("Bad Name", 1, None),
        ):
            response = api.put(
                f"{base(acme)}/models/iris/aliases/{name}/", {"version": number}, format="json"
            )
            assert response.status_code in {400, 404}, (name, number)
            if field:
                assert field in response.json()["error"]["fields"], (name, number)
        assert ModelAlias.objects.for_team(acme).count() == 0


@pytest.mark.django_db(transaction=True)
def test_two_alias_moves_at_once_one_after_the_other_both_audited_never_dangling(
    acme, alice, bob, media
):
    """Two people point ``production`` at different versions at the same moment, each on
    its own connection, while the model's row is held: both wait, then go one after the
    other. One alias row, naming the version the last move named; both moves audited."""
    api = APIClient()
    api.force_login(alice)
    api.post(f"{base(acme)}/models/", {"name": "Iris"}, format="json")
    upload_version(api, acme, "iris", FILES)
    upload_version(api, acme, "iris", {"model.pkl": b"v2"})
    url = f"{base(acme)}/models/iris/aliases/production/"
    answers: dict[str, int] = {}

    def move(user: Any, number: int) -> None:
        client = Client()
        client.force_login(user)
        try:
            response = client.put(url, {"version": number}, content_type="application/json")
            answers[user.email] = response.status_code
        finally:
            connection.close()

    threads = [
        threading.Thread(target=move, args=(alice, 1)),
        threading.Thread(target=move, args=(bob, 2)),
    ]
    with transaction.atomic():
        # Hold the model's lock (as a third move would) so both really overlap.
        Model.objects.for_team(acme).select_for_update().get(slug="iris")
        for thread in threads:
            thread.start()
        waiting = _wait_for_lock_waiters(2)
    for thread in threads:
        thread.join(timeout=30)

    assert waiting == 2, answers
    assert answers == {"alice@example.com": 200, "bob@example.com": 200}
    aliases = list(ModelAlias.objects.for_team(acme).select_related("version", "model"))
    assert len(aliases) == 1
    alias = aliases[0]
    moves = list(
        AuditEntry.objects.for_team(acme).filter(action="model.alias_moved").order_by("pk")
    )
    assert len(moves) == 2
    assert {m.actor_email for m in moves} == {"alice@example.com", "bob@example.com"}
    # The last audited move is what the alias names, and the second saw the first's.
    assert moves[-1].data["to"] == f"v{alias.version.number}"
    assert moves[-1].data["previous"] == moves[0].data["to"]
    assert alias.version.status == "ready"
    assert alias.version.model_id == alias.model_id


def _wait_for_lock_waiters(count: int) -> int:
    """How many other connections wait on a row lock, once ``count`` do (or 10 s pass)."""
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while True:
            # Each request waits for the model row's lock (the first on this transaction,
            # the next on the row's tuple lock): connections of this database only.
            cursor.execute(
                "SELECT count(DISTINCT pid) FROM pg_locks WHERE NOT granted AND pid IN "
                "(SELECT pid FROM pg_locks WHERE database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()))"
            )
            waiting = cursor.fetchone()[0]
            if waiting >= count or time.monotonic() > deadline:
                return waiting
            time.sleep(0.05)


# --- downloads and diffs ---------------------------------------------------------------------


class TestDownloads:
    def test_a_file_and_the_whole_version_as_a_tar_give_the_bytes_back(self, api, acme, iris):
        upload_version(api, acme, "iris", FILES)

        for path, data in FILES.items():
            response = api.get(f"{base(acme)}/models/iris/versions/1/files/{path}")
            assert response.status_code == 200
            assert hashlib.sha256(b"".join(response.streaming_content)).hexdigest() == sha(data)
        assert api.get(f"{base(acme)}/models/iris/versions/1/files/nope").status_code == 404

        response = api.get(f"{base(acme)}/models/iris/versions/latest/archive/")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/x-tar"
        assert 'filename="iris-v1.tar"' in response["Content-Disposition"]
        with tarfile.open(fileobj=io.BytesIO(b"".join(response.streaming_content))) as tar:
            got = {
                m.name: sha(tar.extractfile(m).read())  # type: ignore[union-attr]
                for m in tar.getmembers()
            }
        assert got == {f"iris-v1/{p}": sha(d) for p, d in FILES.items()}

    def test_a_diff_of_two_versions(self, api, acme, iris):
        upload_version(api, acme, "iris", {"a": b"same", "b": b"old b", "c": b"gone"})
        upload_version(api, acme, "iris", {"a": b"same", "b": b"new bb", "d": b"added"})
        api.put(f"{base(acme)}/models/iris/aliases/production/", {"version": 1}, format="json")

        diff = api.get(f"{base(acme)}/models/iris/diff/production/latest/")

        assert diff.status_code == 200
        assert diff.json() == {
            "old": 1,
            "new": 2,
            "added": [{"path": "d", "size": 5}],
            "removed": [{"path": "c", "size": 4}],
            "changed": [{"path": "b", "old_size": 5, "size": 6}],
            "unchanged": [{"path": "a", "size": 4}],
        }
        assert api.get(f"{base(acme)}/models/iris/diff/1/9/").status_code == 404


# --- who may do what ---------------------------------------------------------------------------


def _routes(team: Any, upload_id: int) -> list[tuple[str, str]]:
    """(method, path) of every models route, with real objects of ``team``'s behind them."""
    one = f"{base(team)}/models/iris"
    chunk = f"{base(team)}/model-uploads/{upload_id}/blobs/{sha(b'pending!')}/chunks/0"
    return [
        ("get", f"{base(team)}/models/"),
        ("post", f"{base(team)}/models/"),
        ("get", f"{one}/"),
        ("patch", f"{one}/"),
        ("delete", f"{one}/"),
        ("get", f"{one}/versions/"),
        ("post", f"{one}/versions/"),
        ("get", f"{one}/versions/1/"),
        ("get", f"{one}/versions/production/"),
        ("get", f"{one}/versions/1/files/model.pkl"),
        ("get", f"{one}/versions/1/archive/"),
        ("get", f"{one}/diff/1/production/"),
        ("get", f"{one}/aliases/production/"),
        ("put", f"{one}/aliases/production/"),
        ("delete", f"{one}/aliases/production/"),
        ("get", f"{base(team)}/model-uploads/{upload_id}/"),
        ("put", f"{chunk}/"),
        ("post", f"{chunk}/target/"),
        ("post", f"{base(team)}/model-uploads/{upload_id}/complete/"),
    ]


@pytest.fixture
def held(api, acme, iris) -> int:
    """Version 1 of Iris aliased production, and an open upload of another version: its id."""
    upload_version(api, acme, "iris", FILES)
    api.put(f"{base(acme)}/models/iris/aliases/production/", {"version": 1}, format="json")
    return start(api, acme, "iris", {"model.pkl": b"pending!"}).json()["id"]


class TestAccess:
    def test_another_team_gets_404_everywhere_by_session_and_by_token(
        self, acme, alice, charlie, globex, held
    ):
        _, theirs = token_create(
            user=charlie, name="c", scopes=["models:read", "models:write"], team=globex
        )
        # alice's own token, made for another team of hers, reaches nothing of acme's either.
        initech = TeamFactory.create(name="Initech", slug="initech")
        add_member(initech, alice, Role.OWNER)
        _, elsewhere = token_create(
            user=alice, name="i", scopes=["models:read", "models:write"], team=initech
        )
        by_session = APIClient()
        by_session.force_login(charlie)
        callers = [by_session]
        for plaintext in (theirs, elsewhere):
            caller = APIClient()
            caller.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
            callers.append(caller)

        for caller in callers:
            for method, path in _routes(acme, held):
                response = getattr(caller, method)(path, {"version": 1}, format="json")
                assert response.status_code == 404, (method, path, response.status_code)
        assert ModelAlias.objects.for_team(acme).get().version.number == 1
        assert Model.objects.for_team(acme).count() == 1

    def test_the_team_reads_everything_it_may(self, api, acme, held):
        for method, path in _routes(acme, held):
            if method == "get":
                assert api.get(path).status_code == 200, path

    def test_a_viewer_reads_and_cannot_write(self, acme, erin, held):
        viewer = APIClient()
        viewer.force_login(erin)
        for method, path in _routes(acme, held):
            response = getattr(viewer, method)(path, {"version": 1, "name": "x"}, format="json")
            expected = 200 if method == "get" else 403
            assert response.status_code == expected, (method, path, response.status_code)
        assert ModelAlias.objects.for_team(acme).get().version.number == 1

    def test_an_upload_is_reached_only_through_its_own_purposes_routes(self, api, acme, held):
        """A model's upload is not a dataset's (datasets' routes answer 404), nor the other
        way round, so neither permission nor scope of one reaches the other's."""
        made = api.post(
            f"{base(acme)}/datasets/", {"name": "Cats", "visibility": "private"}, format="json"
        )
        assert made.status_code == 201
        data = b"dataset!"
        theirs = api.post(
            f"{base(acme)}/datasets/cats/uploads/", {"files": manifest({"d": data})}, format="json"
        ).json()["id"]
        assert api.get(f"{base(acme)}/model-uploads/{theirs}/").status_code == 404
        assert api.post(f"{base(acme)}/model-uploads/{theirs}/complete/").status_code == 404
        chunk = f"{base(acme)}/model-uploads/{theirs}/blobs/{sha(data)}/chunks/0/"
        put = api.put(
            chunk,
            data=data[:4],
            content_type="application/octet-stream",
            HTTP_X_CHUNK_SHA256=sha(data[:4]),
        )
        assert put.status_code == 404
        assert api.get(f"{base(acme)}/uploads/{held}/").status_code == 404
        assert api.post(f"{base(acme)}/uploads/{held}/complete/").status_code == 404
        assert not UploadChunk.objects.for_team(acme).filter(blob__upload_id=theirs).exists()
        assert Upload.objects.for_team(acme).get(pk=held).status == "open"

    def test_token_scopes(self, acme, alice, held):
        def caller(*scopes: str) -> APIClient:
            _, plaintext = token_create(user=alice, name="t", scopes=list(scopes))
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
            return client

        reader = caller("models:read")
        for method, path in _routes(acme, held):
            response = getattr(reader, method)(path, {"version": 1}, format="json")
            assert response.status_code == (200 if method == "get" else 403), (method, path)
        assert (
            "models:write"
            in reader.post(f"{base(acme)}/models/", {"name": "X"}).json()["error"]["message"]
        )

        datasets = caller("datasets:read", "datasets:write")
        for method, path in _routes(acme, held):
            response = getattr(datasets, method)(path, {"version": 1}, format="json")
            assert response.status_code == 403, (method, path)
        # Nor through datasets' own upload routes: a model's upload is not theirs.
        assert datasets.get(f"{base(acme)}/uploads/{held}/").status_code == 404

        writer = caller("models:write")
        made = writer.post(f"{base(acme)}/models/", {"name": "Second"}, format="json")
        assert made.status_code == 201
        assert Model.objects.for_team(acme).count() == 2


# --- the plan's storage ------------------------------------------------------------------------


class TestQuota:
    def test_a_version_past_the_quota_is_refused_up_front(self, api, acme, iris, stripe_double):
        files = {"huge.bin": b"huge"}
        listed = [{"path": "huge.bin", "size": 6 * 1024**3, "sha256": sha(files["huge.bin"])}]

        response = api.post(f"{base(acme)}/models/iris/versions/", {"files": listed}, format="json")

        assert response.status_code == 402
        assert response.json()["error"]["code"] == "plan_storage"
        assert ModelVersion.objects.for_team(acme).count() == 0
        assert Upload.objects.for_team(acme).count() == 0

    def test_models_and_datasets_share_the_quota(self, api, acme, iris, stripe_double):
        """Free has 5 GiB: 3 GiB waiting in a dataset's upload leave no room for a model
        version of another 3 GiB."""
        made = api.post(
            f"{base(acme)}/datasets/", {"name": "Cats", "visibility": "public"}, format="json"
        )
        assert made.status_code == 201, made.content  # Free keeps datasets public
        big = [{"path": "big.bin", "size": 3 * 1024**3, "sha256": sha(b"dataset")}]
        assert (
            api.post(f"{base(acme)}/datasets/cats/uploads/", {"files": big}, format="json")
        ).status_code == 201

        other = [{"path": "weights.bin", "size": 3 * 1024**3, "sha256": sha(b"model")}]
        response = api.post(f"{base(acme)}/models/iris/versions/", {"files": other}, format="json")

        assert response.status_code == 402
        assert "this needs 3.00 GiB" in response.json()["error"]["message"]
        assert ModelVersion.objects.for_team(acme).count() == 0
