"""Notebooks mount dataset versions read-only at /datasets/<name>.

Who may attach what (the team's ready versions, or a public dataset's), how a
host builds a version's folder once and reuses it, what the runtimes are
given at start, and, on a real Docker engine, that the folder is there and
cannot be written.
"""

from __future__ import annotations

import contextlib
import stat
import sys
import time
import uuid
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from docker.errors import NotFound

from apps.core.models import AuditEntry
from apps.datasets.blob_urls import with_read_urls
from apps.datasets.models import (
    Blob,
    Dataset,
    DatasetVersion,
    VersionFile,
    blob_key,
)
from apps.machines.agent import spec_to_task, with_datasets
from apps.machines.materialise import MaterialiseError, materialise
from apps.notebooks import mounts, services
from apps.notebooks.models import NotebookMount, NotebookSession, Status
from apps.runtimes.base import Spec, WorkloadError
from apps.runtimes.fake import FakeRuntime
from apps.runtimes.process import LocalProcessRuntime
from tests.dataset_fixtures import make_version, sha
from tests.notebook_fixtures import make_notebook

pytestmark = pytest.mark.django_db(transaction=True)

CATS = {"README.md": b"cats\n", "images/a/1.jpg": b"\xff\xd8one", "images/b/2.jpg": b"\xff\xd8two"}


@pytest.fixture
def cats(acme, served_media) -> DatasetVersion:
    return make_version(acme, "Cats", CATS)


def attach_url(team, notebook) -> str:
    return f"/t/{team.slug}/notebooks/{notebook.pk}/datasets/"


def audits(team, action) -> int:
    return AuditEntry.objects.for_team(team).filter(action=action).count()


# --- attaching and removing -----------------------------------------------------------


def test_a_member_attaches_a_ready_version_at_its_slug(client, acme, bob, notebook, cats):
    client.force_login(bob)

    response = client.post(attach_url(acme, notebook), {"version": cats.pk})

    assert response.status_code == 302
    mount = NotebookMount.objects.for_team(acme).get()
    assert (mount.notebook, mount.version, mount.name, mount.created_by) == (
        notebook,
        cats,
        "cats",
        bob,
    )
    assert audits(acme, "notebook.dataset_mounted") == 1
    page = client.get(response["Location"]).content.decode()
    assert "/datasets/cats" in page
    assert "from its next start" in page


def test_another_teams_private_version_is_refused_and_nothing_is_written(
    client, acme, alice, globex, notebook, served_media
):
    secret = make_version(globex, "Secret", {"a.csv": b"1,2\n"})

    with pytest.raises(mounts.MountNotFoundError) as refused:
        mounts.mount_add(team=acme, actor=alice, notebook=notebook, version=secret)
    assert refused.value.status_code == 404
    client.force_login(alice)
    response = client.post(attach_url(acme, notebook), {"version": secret.pk, "name": "x"})

    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert "your team cannot use it" in page
    assert "Secret" not in page
    assert not NotebookMount.objects.for_team(acme).exists()
    assert audits(acme, "notebook.dataset_mounted") == 0


def test_a_public_version_of_another_team_can_be_attached(
    client, acme, alice, globex, notebook, served_media
):
    public = make_version(globex, "Open Cats", CATS, visibility=Dataset.Visibility.PUBLIC)
    client.force_login(alice)

    client.post(attach_url(acme, notebook), {"version": public.pk, "name": "open"})

    mount = NotebookMount.objects.for_team(acme).get()
    assert (mount.team, mount.version, mount.name) == (acme, public, "open")
    assert "(public)" in client.get(f"/t/acme/notebooks/{notebook.pk}/").content.decode()


def test_a_version_still_uploading_is_refused(acme, alice, notebook, served_media):
    uploading = make_version(acme, "Dogs", {"d.txt": b"woof"}, ready=False)

    with pytest.raises(services.NotebookError, match="still uploading"):
        mounts.mount_add(team=acme, actor=alice, notebook=notebook, version=uploading)
    assert not NotebookMount.objects.for_team(acme).exists()


def test_a_viewer_cannot_attach_or_remove(client, acme, alice, erin, notebook, cats):
    with pytest.raises(services.NotebookPermissionError):
        mounts.mount_add(team=acme, actor=erin, notebook=notebook, version=cats)
    mount = mounts.mount_add(team=acme, actor=alice, notebook=notebook, version=cats)
    client.force_login(erin)

    assert client.post(attach_url(acme, notebook), {"version": cats.pk}).status_code == 403
    remove = f"{attach_url(acme, notebook)}{mount.pk}/remove/"
    assert client.post(remove).status_code == 403
    assert NotebookMount.objects.for_team(acme).count() == 1


def test_a_folder_name_is_used_once_and_a_dataset_once_per_notebook(acme, alice, notebook, cats):
    dogs = make_version(acme, "Dogs", {"d.txt": b"woof"})
    cats_v2 = make_version(acme, "Cats", {"README.md": b"more cats\n"}, number=2)
    mounts.mount_add(team=acme, actor=alice, notebook=notebook, version=cats, name="pets")

    with pytest.raises(services.NotebookConflictError, match="already has a dataset"):
        mounts.mount_add(team=acme, actor=alice, notebook=notebook, version=dogs, name="pets")
    with pytest.raises(services.NotebookConflictError, match="remove it first"):
        mounts.mount_add(team=acme, actor=alice, notebook=notebook, version=cats_v2)
    with pytest.raises(services.NotebookError, match="letters, digits"):
        mounts.mount_add(team=acme, actor=alice, notebook=notebook, version=dogs, name="../etc")
    assert list(NotebookMount.objects.for_team(acme).values_list("name", flat=True)) == ["pets"]


def test_removing_a_mount_and_only_from_its_notebook(
    client, acme, alice, notebook, cats, catalogue
):
    other = make_notebook(acme, alice, "Other")
    mount = mounts.mount_add(team=acme, actor=alice, notebook=notebook, version=cats)
    client.force_login(alice)

    assert client.post(f"{attach_url(acme, other)}{mount.pk}/remove/").status_code == 404
    response = client.post(f"{attach_url(acme, notebook)}{mount.pk}/remove/")

    assert response.status_code == 302
    assert not NotebookMount.objects.for_team(acme).exists()
    assert audits(acme, "notebook.dataset_unmounted") == 1


# --- the folder on the host -----------------------------------------------------------


def spec_mount(version: DatasetVersion, name: str = "cats") -> dict[str, Any]:
    """A mount as the host gets it: its manifest, and a read link per blob."""
    files = [
        (f.path, f.blob.sha256, f.size)
        for f in VersionFile.objects.unscoped().filter(version=version).select_related("blob")
    ]
    mount = {
        "name": name,
        "version_id": version.pk,
        "key": mounts.content_key(files),
        "files": [[p, s, n] for p, s, n in files],
    }
    return with_read_urls([mount], seconds=600)[0]


def test_a_version_is_built_once_read_only_and_then_reused(cats, cache):
    mount = spec_mount(cats)

    folder = materialise(mount, cache)

    assert folder == cache / mount["key"]
    assert {
        str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    } == CATS
    assert stat.S_IMODE(folder.stat().st_mode) == 0o555
    assert stat.S_IMODE((folder / "images" / "a").stat().st_mode) == 0o555
    assert stat.S_IMODE((folder / "README.md").stat().st_mode) == 0o444
    assert [p.name for p in cache.iterdir()] == [mount["key"]]  # no partial left behind
    written = (folder / "README.md").stat().st_mtime_ns
    # Built already: reused without reading the storage (the blobs could be gone).
    for data in CATS.values():
        default_storage.delete(blob_key(sha(data)))
    assert materialise(mount, cache) == folder
    assert (folder / "README.md").stat().st_mtime_ns == written


def test_an_escaping_path_planted_in_the_database_is_refused(acme, cats, cache, tmp_path):
    blob = Blob.objects.get(sha256=sha(CATS["README.md"]))
    VersionFile.objects.for_team(acme).create(
        team=acme, version=cats, path="../../escaped.txt", blob=blob, size=blob.size
    )
    mount = spec_mount(cats)

    with pytest.raises(MaterialiseError, match="outside the dataset's folder"):
        materialise(mount, cache)

    assert not (tmp_path / "escaped.txt").exists()
    assert not (cache.parent / "escaped.txt").exists()
    assert list(cache.iterdir()) == []
    absolute = {**mount, "files": [["/tmp/escaped.txt", mount["files"][0][1], 5]]}  # noqa: S108
    with pytest.raises(MaterialiseError, match="outside"):
        materialise(absolute, cache)
    with pytest.raises(MaterialiseError, match="not a content key"):
        materialise({**mount, "key": "../../x"}, cache)


def test_bytes_that_are_not_what_the_version_says_are_refused(cats, cache):
    mount = spec_mount(cats)
    key = blob_key(sha(CATS["README.md"]))
    default_storage.delete(key)
    default_storage.save(key, ContentFile(b"dogs\n"))

    with pytest.raises(MaterialiseError, match="not what the dataset says"):
        materialise(mount, cache)
    assert list(cache.iterdir()) == []


# --- at start -------------------------------------------------------------------------


def started(team, actor, notebook) -> NotebookSession:
    session = services.notebook_start(team=team, actor=actor, notebook=notebook)
    return NotebookSession.objects.for_team(team).get(pk=session.pk)


def test_a_started_notebook_gets_its_mounts_in_the_spec(
    acme, alice, globex, host, notebook, cats, cache, django_capture_on_commit_callbacks
):
    public = make_version(globex, "Open", {"o.txt": b"open"}, visibility=Dataset.Visibility.PUBLIC)
    mounts.mount_add(team=acme, actor=alice, notebook=notebook, version=cats)
    mounts.mount_add(team=acme, actor=alice, notebook=notebook, version=public, name="open")

    with django_capture_on_commit_callbacks(execute=True):
        session = started(acme, alice, notebook)

    assert session.status == Status.RUNNING
    given = FakeRuntime._running[session.workload]["datasets"]
    assert [(d["name"], d["version_id"]) for d in given] == [("cats", cats.pk), ("open", public.pk)]
    for dataset in given:
        assert dataset["source"] == str(cache / dataset["key"])
    assert (cache / given[0]["key"] / "images" / "b" / "2.jpg").read_bytes() == CATS[
        "images/b/2.jpg"
    ]
    assert (cache / given[1]["key"] / "o.txt").read_bytes() == b"open"


def test_a_dataset_that_cannot_be_copied_fails_the_start_with_the_reason(
    acme, alice, host, notebook, cats, cache
):
    mounts.mount_add(team=acme, actor=alice, notebook=notebook, version=cats)
    default_storage.delete(blob_key(sha(CATS["README.md"])))

    session = started(acme, alice, notebook)

    assert session.status == Status.FAILED
    notebook.refresh_from_db()
    assert "/datasets/cats could not be copied" in notebook.status_message
    assert session.workload not in FakeRuntime._running


def test_the_spec_travels_to_the_agent_with_its_datasets(cats, cache):
    spec = Spec(name="w", image="i", command=["x"], datasets=[spec_mount(cats)])

    built = with_datasets(Spec(**spec_to_task(spec)), cache)

    assert built.datasets == [
        {
            "name": "cats",
            "version_id": cats.pk,
            "key": spec.datasets[0]["key"],
            "source": str(cache / spec.datasets[0]["key"]),
        }
    ]
    assert built.fingerprint() == with_datasets(spec, cache).fingerprint()


def test_a_runtime_refuses_a_dataset_not_built_on_its_host(fake_runtime):
    spec = Spec(name="w", image="i", command=["x"], datasets=[{"name": "cats", "key": "k"}])

    with pytest.raises(WorkloadError, match="not on this host"):
        FakeRuntime().start(spec)


def test_the_process_runtime_links_each_dataset_in_the_working_folder(cats, cache, tmp_path):
    folder = materialise(spec_mount(cats), cache)
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    script = "import os, sys; print(sorted(os.listdir(sys.argv[1])))"
    spec = Spec(
        name="ds-1",
        image="",
        command=[sys.executable, "-c", script, "{mount:/datasets/cats}"],
        volumes={"vol-ds": "/notebooks"},
        datasets=[{"name": "cats", "key": folder.name, "source": str(folder)}],
    )

    state = runtime.start(spec)

    link = tmp_path / "runtime" / "volumes" / "vol-ds" / "datasets" / "cats"
    assert link.is_symlink()
    assert link.resolve() == folder
    deadline = time.monotonic() + 10
    while runtime.poll(state) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(runtime.logs(state)) == ["['README.md', 'images']"]
    # Started again without it: the link goes.
    runtime.start(Spec(name="ds-1", image="", command=["true"], volumes={"vol-ds": "/notebooks"}))
    assert not link.exists()
    assert not link.is_symlink()


# --- on a real Docker engine ----------------------------------------------------------


@pytest.mark.docker
def test_a_container_sees_the_dataset_and_cannot_write_it(
    docker_client, busybox_image, cats, cache
):
    from apps.runtimes.docker import DockerRuntime

    runtime = DockerRuntime(docker_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    spec = Spec(
        name=name,
        image=busybox_image,
        command=["/bin/busybox", "httpd", "-f", "-p", "{port}", "-h", "/www"],
        vcpus=0.5,
        memory_bytes=64 * 1024**2,
        pids_limit=64,
        labels={"team": "acme"},
        datasets=[spec_mount(cats)],
    )
    try:
        state = runtime.start(with_datasets(spec, cache))
        container = docker_client.containers.get(state["container_id"])

        listed = container.exec_run(["/bin/busybox", "ls", "-R", "/datasets/cats"])
        assert listed.exit_code == 0
        assert {"README.md", "1.jpg", "2.jpg"} <= set(listed.output.decode().split())
        read = container.exec_run(["/bin/busybox", "cat", "/datasets/cats/README.md"])
        assert read.output == CATS["README.md"]
        written = container.exec_run(["/bin/busybox", "touch", "/datasets/cats/new.txt"])
        assert written.exit_code != 0
        assert "Read-only file system" in written.output.decode()
        as_root = container.exec_run(["/bin/busybox", "rm", "/datasets/cats/README.md"], user="0:0")
        assert "Read-only file system" in as_root.output.decode()
    finally:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)
