"""Datasets on S3 (a local moto S3 server): parts go straight from the client to
presigned URLs, Lattice never holds the bytes, and checks each file whole at the end."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from apps.core.tenancy import team_scope
from apps.datasets.models import Blob, blob_key
from apps.datasets.services import dataset_create
from tests.blob_fixtures import s3_default_storage
from tests.dataset_fixtures import sha

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024
CHUNK = 5 * MIB  # S3's smallest part but the last


@pytest.fixture(scope="session")
def moto_url() -> Any:
    """Moto's S3 as it is, taking presigned URLs on trust: the checked fake S3 of
    tests.blob_fixtures signs only an object's path, so it refuses a part's URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(settings, moto_url) -> Any:
    settings.LATTICE_UPLOAD_CHUNK_BYTES = CHUNK
    return s3_default_storage(settings, moto_url, access_key="test", secret_key="test")


def keys(s3: Any, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.fixture
def cats(acme, alice, s3):
    with team_scope(acme):
        return dataset_create(team=acme, actor=alice, name="Cats")


@pytest.fixture
def api(client, alice):
    client.force_login(alice)
    return client


def base(team) -> str:
    return f"/api/v1/teams/{team.slug}"


def start(api, team, files: dict[str, bytes]) -> dict:
    manifest = [{"path": p, "size": len(b), "sha256": sha(b)} for p, b in files.items()]
    response = api.post(
        f"{base(team)}/datasets/cats/uploads/", {"files": manifest}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    return response.json()


def send(api, team, upload_id: int, data: bytes, index: int, *, body: bytes | None = None) -> int:
    """Ask for the chunk's target and PUT it there, as the browser does."""
    piece = data[index * CHUNK : (index + 1) * CHUNK]
    target = api.post(
        f"{base(team)}/uploads/{upload_id}/blobs/{sha(data)}/chunks/{index}/target/",
        {"sha256": sha(piece)},
        content_type="application/json",
    ).json()
    assert target["url"].startswith("http://127.0.0.1:")  # straight to storage
    return httpx.put(
        target["url"], content=piece if body is None else body, headers=target["headers"]
    ).status_code


def complete(api, team, upload_id):
    return api.post(f"{base(team)}/uploads/{upload_id}/complete/", content_type="application/json")


def test_parts_go_straight_to_s3_and_version_2_sends_only_the_change(api, acme, cats, s3):
    a, b = os.urandom(CHUNK + 100), os.urandom(100)
    upload = start(api, acme, {"a.bin": a, "b.txt": b})
    assert upload["direct"] is True
    for blob in upload["blobs"]:
        data = a if blob["sha256"] == sha(a) else b
        for index in blob["missing"]:
            assert send(api, acme, upload["id"], data, index) == 200
    assert complete(api, acme, upload["id"]).json()["number"] == 1

    changed = os.urandom(100)
    upload = start(api, acme, {"a.bin": a, "b.txt": changed})
    assert [blob["sha256"] for blob in upload["blobs"]] == [sha(changed)]
    assert send(api, acme, upload["id"], changed, 0) == 200
    assert complete(api, acme, upload["id"]).json()["number"] == 2

    assert keys(s3, "datasets/blobs/") == sorted(blob_key(sha(x)) for x in (a, b, changed))
    assert keys(s3, "datasets/uploads/") == sorted(
        f"datasets/uploads/{n}/manifest.jsonl" for n in (upload["id"] - 1, upload["id"])
    )
    stored = s3.get_object(Bucket=s3.bucket, Key=blob_key(sha(a)))["Body"].read()
    assert stored == a


def test_a_dropped_upload_resumes_from_the_parts_s3_holds(api, acme, cats, s3):
    data = os.urandom(2 * CHUNK + 10)
    upload = start(api, acme, {"big.bin": data})
    assert send(api, acme, upload["id"], data, 1) == 200  # then the connection drops

    resumed = api.get(f"{base(acme)}/uploads/{upload['id']}/").json()

    assert resumed["blobs"][0]["missing"] == [0, 2]
    for index in resumed["blobs"][0]["missing"]:
        assert send(api, acme, upload["id"], data, index) == 200
    assert complete(api, acme, upload["id"]).status_code == 201


def test_a_chunk_through_lattice_goes_on_to_s3(api, acme, cats, s3):
    data = os.urandom(100)
    upload = start(api, acme, {"small.bin": data})
    response = api.put(
        f"{base(acme)}/uploads/{upload['id']}/blobs/{sha(data)}/chunks/0/",
        data=data,
        content_type="application/octet-stream",
        HTTP_X_CHUNK_SHA256=sha(data),
    )
    assert response.status_code == 204
    assert complete(api, acme, upload["id"]).status_code == 201
    assert Blob.objects.filter(sha256=sha(data)).exists()


def test_a_file_that_does_not_hash_right_is_sent_again_whole(api, acme, cats, s3):
    # moto takes a part whatever its checksum (S3 and MinIO refuse it): Lattice's own
    # check of the whole file must catch it.
    data = os.urandom(100)
    upload = start(api, acme, {"f.bin": data})
    assert send(api, acme, upload["id"], data, 0, body=os.urandom(100)) == 200

    response = complete(api, acme, upload["id"])

    assert response.status_code == 400
    assert "send all of its chunks again" in response.json()["error"]["message"]
    assert not Blob.objects.filter(sha256=sha(data)).exists()
    assert keys(s3, "datasets/blobs/") == []
    again = api.get(f"{base(acme)}/uploads/{upload['id']}/").json()
    assert again["blobs"][0]["missing"] == [0]
    assert send(api, acme, upload["id"], data, 0) == 200
    assert complete(api, acme, upload["id"]).status_code == 201


def test_complete_with_a_part_missing_makes_nothing(api, acme, cats, s3):
    data = os.urandom(CHUNK + 1)
    upload = start(api, acme, {"f.bin": data})
    send(api, acme, upload["id"], data, 0)

    response = complete(api, acme, upload["id"])

    assert response.status_code == 400
    assert "1 chunk of 1 file still to send" in response.json()["error"]["message"]
    assert keys(s3, "datasets/blobs/") == []


def test_downloads_from_s3(api, acme, cats, s3):
    data = os.urandom(300)
    upload = start(api, acme, {"d/f.bin": data})
    send(api, acme, upload["id"], data, 0)
    complete(api, acme, upload["id"])

    response = api.get(f"{base(acme)}/datasets/cats/versions/1/files/d/f.bin")

    assert b"".join(response.streaming_content) == data


def test_another_teams_file_is_not_had_by_naming_its_hash(api, acme, cats, s3, charlie, globex):
    """Charlie (Globex) names the hash of Acme's stored file: he is asked for its bytes like
    anyone, sends others straight to S3, and the whole-file check refuses them; Acme's
    object is untouched."""
    from django.test import Client

    from apps.datasets.models import VersionFile

    secret = os.urandom(CHUNK + 100)
    upload = start(api, acme, {"secret.bin": secret})
    for index in upload["blobs"][0]["missing"]:
        send(api, acme, upload["id"], secret, index)
    assert complete(api, acme, upload["id"]).status_code == 201
    attacker = Client()
    attacker.force_login(charlie)
    with team_scope(globex):
        dataset_create(team=globex, actor=charlie, name="Cats")

    response = attacker.post(
        f"{base(globex)}/datasets/cats/uploads/",
        {"files": [{"path": "loot.bin", "size": len(secret), "sha256": sha(secret)}]},
        content_type="application/json",
    )

    body = response.json()
    assert response.status_code == 201
    assert body["direct"] is True
    assert [(b["sha256"], b["missing"]) for b in body["blobs"]] == [(sha(secret), [0, 1])]
    forged = os.urandom(len(secret))
    for index in (0, 1):
        piece = forged[index * CHUNK : (index + 1) * CHUNK]
        target = attacker.post(
            f"{base(globex)}/uploads/{body['id']}/blobs/{sha(secret)}/chunks/{index}/target/",
            {"sha256": sha(piece)},
            content_type="application/json",
        ).json()
        assert httpx.put(target["url"], content=piece, headers=target["headers"]).status_code == 200
    refused = complete(attacker, globex, body["id"])
    assert refused.status_code == 400
    assert "send all of its chunks again" in refused.json()["error"]["message"]
    assert not VersionFile.objects.for_team(globex).exists()
    assert Blob.objects.get().sha256 == sha(secret)
    assert s3.get_object(Bucket=s3.bucket, Key=blob_key(sha(secret)))["Body"].read() == secret


def test_a_file_another_upload_of_the_team_stored_meanwhile_is_not_needed(
    api, acme, cats, s3, django_capture_on_commit_callbacks
):
    """Two uploads of one file: the second completes first; the first then completes without
    the parts it still lacked, and its multipart upload on S3 is given up."""
    data = os.urandom(CHUNK + 100)
    first = start(api, acme, {"a.bin": data})
    assert send(api, acme, first["id"], data, 0) == 200
    second = start(api, acme, {"b.bin": data})
    for index in second["blobs"][0]["missing"]:
        assert send(api, acme, second["id"], data, index) == 200
    assert complete(api, acme, second["id"]).status_code == 201

    with django_capture_on_commit_callbacks(execute=True):
        response = complete(api, acme, first["id"])

    assert response.status_code == 201, response.content
    assert response.json()["number"] == 2
    open_parts = s3.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert open_parts == []
    assert s3.get_object(Bucket=s3.bucket, Key=blob_key(sha(data)))["Body"].read() == data
