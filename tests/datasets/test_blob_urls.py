"""A host reads the blobs it was told to mount and no other (ARCHITECTURE decision 9).

Each test plays the host with exactly what a host holds: the agent's settings and the
start message the control plane sent it (captured as it is published). With S3 the
message brings presigned URLs (the fake S3 checks them as S3 does: tests/blob_fixtures.py);
with a local folder, links to the web tier's blob view signed under SECRET_KEY. No storage
credential travels, another version's blobs have no link, a link changed to name another
blob or past its expiry is refused, and bytes that are not the manifest's fail the start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from celery.signals import before_task_publish
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from kombu import Connection

from apps.core.tenancy import team_scope
from apps.datasets import blob_urls
from apps.datasets.models import blob_key
from apps.machines.agent import with_datasets
from apps.notebooks import lifecycle, services
from apps.notebooks.models import NotebookSession, Status
from apps.notebooks.mounts import mount_add
from apps.runtimes.base import Spec, WorkloadError
from apps.runtimes.fake import FakeRuntime
from tests.blob_fixtures import S3_SECRET_KEY, presigned_expiry
from tests.dataset_fixtures import make_version, sha

if TYPE_CHECKING:
    from collections.abc import Iterator

    from apps.teams.models import Team

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
CATS = {"README.md": b"cats\n", "big.bin": os.urandom(2 * MIB + 17), "same.txt": b"cats\n"}
SECRET = {"passwords.csv": b"alice,hunter2\n"}


def sent_to_host(team: Team, actor: Any, notebook: Any) -> dict[str, Any]:
    """Start ``notebook`` and return the agent.start message the host's queue got: its
    arguments as the host reads them, and its time limit."""
    from config.celery import app as celery_app

    published: list[dict[str, Any]] = []

    def seen(sender: str | None = None, body: Any = None, headers: Any = None, **_: Any) -> None:
        if sender == "agent.start":
            published.append({"args": body[0], "time_limit": headers["timelimit"][0]})

    was_eager = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = False
    before_task_publish.connect(seen)
    try:
        session = services.notebook_start(team=team, actor=actor, notebook=notebook)
        with team_scope(team):
            lifecycle.session_place(NotebookSession.objects.get(pk=session.pk))
    finally:
        before_task_publish.disconnect(seen)
        celery_app.conf.task_always_eager = was_eager
        # Nothing is left for a later test's worker to pick up.
        with Connection(celery_app.conf.broker_url) as conn:
            conn.SimpleQueue("host.local").clear()
    (message,) = published
    return message


def fetch(url: str) -> httpx.Response:
    return httpx.get(url, timeout=10)


def with_path(url: str, path: str) -> str:
    return urlsplit(url)._replace(path=path).geturl()


def with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query)) | changes
    return parts._replace(query=urlencode(query)).geturl()


def host_builds(message: dict[str, Any], cache: Path) -> dict[str, bytes]:
    """What the host's agent builds from the message, file by file."""
    spec = with_datasets(Spec(**message["args"][1]), cache, runtime=FakeRuntime())
    folder = Path(spec.datasets[0]["source"])
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# --- S3: presigned URLs -----------------------------------------------------------------


def test_with_s3_a_host_reads_the_version_it_mounts_and_no_other(
    acme, alice, globex, host, notebook, presigned_s3, cache
):
    cats = make_version(acme, "Cats", CATS, s3=presigned_s3)
    make_version(globex, "Secret", SECRET, s3=presigned_s3)
    mount_add(team=acme, actor=alice, notebook=notebook, version=cats)

    message = sent_to_host(acme, alice, notebook)

    text = json.dumps(message)
    # No credential travels, and the other team's version is not named at all.
    assert S3_SECRET_KEY not in text
    assert sha(SECRET["passwords.csv"]) not in text
    (dataset,) = message["args"][1]["datasets"]
    assert set(dataset["urls"]) == {sha(data) for data in CATS.values()}
    for data in CATS.values():
        assert fetch(dataset["urls"][sha(data)]).content == data
    # A link changed to name the other version's blob: the signature no longer holds.
    forged = with_path(
        dataset["urls"][sha(CATS["README.md"])],
        f"/{presigned_s3.bucket}/{blob_key(sha(SECRET['passwords.csv']))}",
    )
    refused = fetch(forged)
    assert refused.status_code == 403
    assert b"SignatureDoesNotMatch" in refused.content
    assert b"hunter2" not in refused.content
    # Nor does asking with no link at all.
    assert fetch(forged.split("?")[0]).status_code == 403
    # The host builds the folder from the message alone.
    assert host_builds(message, cache) == CATS


def assert_refused_once_expired(url: str, data: bytes, cache: Path) -> None:
    """Past its expiry the link is refused, and a start that needs it fails cleanly."""
    time.sleep(4.1)
    assert fetch(url).status_code == 403
    spec = dataset_spec({"late.txt": data}, {sha(data): url})
    with pytest.raises(WorkloadError, match="its link may have expired"):
        with_datasets(spec, cache, runtime=FakeRuntime())
    assert list(cache.iterdir()) == []


def test_with_s3_a_link_works_for_the_starts_time_and_not_after(
    media, presigned_s3, cache, fake_runtime
):
    data = b"expiring\n"
    presigned_s3.put_object(Bucket=presigned_s3.bucket, Key=blob_key(sha(data)), Body=data)

    # Expiry is in whole seconds: 3 s leaves the first fetch time on a busy machine
    # (with 1 s, a link signed late in a second had expired before its first fetch).
    url = blob_urls.read_url(sha(data), seconds=3)

    assert abs(presigned_expiry(url) - (time.time() + 3)) < 2
    assert fetch(url).content == data
    assert_refused_once_expired(url, data, cache)


# --- a local folder: signed links to the blob view --------------------------------------


def test_with_a_local_folder_a_host_reads_the_version_it_mounts_and_no_other(
    acme, alice, globex, host, notebook, media, cache, blob_links, settings
):
    cats = make_version(acme, "Cats", CATS)
    make_version(globex, "Secret", SECRET)
    mount_add(team=acme, actor=alice, notebook=notebook, version=cats)

    message = sent_to_host(acme, alice, notebook)

    text = json.dumps(message)
    assert settings.SECRET_KEY not in text
    assert str(media) not in text
    assert sha(SECRET["passwords.csv"]) not in text
    (dataset,) = message["args"][1]["datasets"]
    assert set(dataset["urls"]) == {sha(data) for data in CATS.values()}
    for data in CATS.values():
        url = dataset["urls"][sha(data)]
        assert url.startswith(f"{blob_links}/hosts/blobs/{sha(data)}?")
        assert fetch(url).content == data
    # Another blob's hash in a valid link, a changed expiry, no signature, no hash: 403,
    # with nothing that says whether the blob exists.
    url = dataset["urls"][sha(CATS["README.md"])]
    secret = sha(SECRET["passwords.csv"])
    later = str(int(dict(parse_qsl(urlsplit(url).query))["expires"]) + 3600)
    for forged in [
        with_path(url, f"/hosts/blobs/{secret}"),
        with_query(url, expires=later),
        with_query(url, signature=""),
        with_path(url, f"/hosts/blobs/{secret}").split("?")[0],
        with_path(url, "/hosts/blobs/not-a-hash"),
    ]:
        refused = fetch(forged)
        assert refused.status_code == 403, forged
        assert b"hunter2" not in refused.content
    # No listing of the store, nor a way out of it.
    assert fetch(with_path(url, "/hosts/blobs/")).status_code == 404
    assert fetch(with_path(url, "/hosts/blobs/..%2f..%2fsecret_key")).status_code == 404
    assert host_builds(message, cache) == CATS


def test_a_signed_link_to_a_blob_not_stored_is_a_404_and_one_past_its_expiry_a_403(
    media, blob_links, cache, fake_runtime
):
    data = b"expiring\n"
    default_storage.save(blob_key(sha(data)), ContentFile(data))
    missing = sha(b"never stored")

    assert fetch(blob_urls.read_url(missing, seconds=60)).status_code == 404
    # Expiry is in whole seconds: 3 s leaves the first fetch time on a busy machine.
    url = blob_urls.read_url(sha(data), seconds=3)
    served = fetch(url)
    assert served.content == data
    assert served.headers["content-disposition"] == f'attachment; filename="{sha(data)}"'
    assert served.headers["content-type"] == "application/octet-stream"
    assert_refused_once_expired(url, data, cache)


def test_a_link_signed_under_an_old_key_still_works_once_the_key_is_rotated(
    media, blob_links, settings
):
    data = b"rotated\n"
    default_storage.save(blob_key(sha(data)), ContentFile(data))
    url = blob_urls.read_url(sha(data), seconds=60)

    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "another-test-only-key-0123456789abcdefghijklmnopqrstuvwxyz"

    assert fetch(url).content == data
    settings.SECRET_KEY_FALLBACKS = []
    assert fetch(url).status_code == 403


# --- bytes that are not the manifest's ------------------------------------------------


def dataset_spec(files: dict[str, bytes], urls: dict[str, str]) -> Spec:
    from apps.notebooks.mounts import content_key

    listed = [(path, sha(data), len(data)) for path, data in files.items()]
    dataset = {
        "name": "cats",
        "version_id": 1,
        "key": content_key(listed),
        "files": [list(entry) for entry in listed],
        "urls": urls,
    }
    return Spec(name="nb-1-s1", image="i", command=["x"], datasets=[dataset])


@pytest.fixture
def tampering(blob_server: str) -> Iterator[dict[str, Any]]:
    """A server between the host and the blob view (a compromised store or network) that
    passes each blob on altered as ``how["way"]`` says: "flipped" (a byte changed),
    "short" (the last byte dropped) or "long" (a byte added)."""
    how: dict[str, Any] = {"way": "flipped"}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = httpx.get(blob_server + self.path, timeout=10).content
            if how["way"] == "flipped":
                body = bytes([body[0] ^ 1]) + body[1:]
            elif how["way"] == "short":
                body = body[:-1]
            else:
                body += b"!"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    how["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield how
    finally:
        server.shutdown()
        thread.join(timeout=10)


@pytest.mark.parametrize("way", ["flipped", "short", "long"])
def test_a_tampered_blob_served_at_its_link_fails_the_start_cleanly(
    acme, alice, host, notebook, media, cache, tampering, settings, way
):
    settings.LATTICE_INTERNAL_URL = tampering["url"]
    tampering["way"] = way
    cats = make_version(acme, "Cats", CATS)
    mount_add(team=acme, actor=alice, notebook=notebook, version=cats)

    session = services.notebook_start(team=acme, actor=alice, notebook=notebook)

    session = NotebookSession.objects.for_team(acme).get(pk=session.pk)
    notebook.refresh_from_db()
    assert session.status == Status.FAILED
    assert "/datasets/cats could not be copied" in notebook.status_message
    assert "are not what the dataset says they are" in notebook.status_message
    assert session.workload not in FakeRuntime._running
    assert list(cache.iterdir()) == []  # nothing built, nothing half built


# --- what the agent holds -------------------------------------------------------------


def agent_settings(env: dict[str, str], script: str) -> subprocess.CompletedProcess[str]:
    """``script`` run under the agent's settings with ``env`` added to a clean environment."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "LATTICE_", "DJANGO_", "DATABASE_", "REDIS_"))
    }
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup()\n{script}"],
        cwd=ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "config.settings.agent",
            # An agent's own broker URL (never the trusted tier's REDIS_URL: docs/hosts.md).
            "LATTICE_AGENT_BROKER_URL": "redis://lattice-host-gpu-2:x@127.0.0.1:6379/0",
            **env,
        },
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_agent_refuses_to_start_with_storage_credentials():
    result = agent_settings(
        {
            "LATTICE_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": "lattice",
            "AWS_S3_ENDPOINT_URL": "http://minio:9000",
            "AWS_ACCESS_KEY_ID": "lattice",
            "AWS_SECRET_ACCESS_KEY": "minio-root-password-0123456789",
        },
        "print('started')",
    )

    assert result.returncode != 0
    assert "started" not in result.stdout
    assert "must not hold object storage credentials" in result.stderr
    assert "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY" in result.stderr


def test_the_agent_settings_hold_no_storage_and_not_the_web_tiers_key():
    web_key = "the-web-tiers-own-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
    script = (
        "from django.conf import settings\n"
        "from django.core.files.storage import default_storage\n"
        "values = repr({k: getattr(settings, k) for k in dir(settings) if k.isupper()})\n"
        "print(sorted(settings.STORAGES))\n"
        f"print({web_key!r} in values)\n"
        "try:\n"
        "    default_storage.open('datasets/blobs/x')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
    )

    result = agent_settings(
        {
            "DJANGO_SECRET_KEY": web_key,
            "LATTICE_STORAGE": "s3",
            "AWS_STORAGE_BUCKET_NAME": "lattice",
            "AWS_S3_ENDPOINT_URL": "http://minio:9000",
        },
        script,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['staticfiles']", "False", "InvalidStorageError"]
