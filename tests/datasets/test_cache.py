"""A host's dataset cache stays within its budget, least recently used first.

Folders a workload on the host mounts stay whatever the budget, and nothing in
the cache but its key folders (and stale temporary ones) is ever removed.
Real folders on disk, built read-only as materialise builds them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from docker.errors import NotFound

from apps.datasets.blob_urls import with_read_urls
from apps.datasets.models import blob_key
from apps.machines.agent import with_datasets
from apps.machines.materialise import STALE_SECONDS, evict, materialise
from apps.notebooks.mounts import content_key
from apps.runtimes.base import Spec
from apps.runtimes.fake import FakeRuntime
from apps.runtimes.process import LocalProcessRuntime
from tests.dataset_fixtures import sha, spec_dataset

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

HOUR = 3600


def key_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def used(folder: Path, seconds_ago: float) -> None:
    """Say ``folder`` was last used that long ago (what materialise records: its mtime)."""
    at = time.time() - seconds_ago
    os.utime(folder, (at, at), follow_symlinks=False)


def build(cache: Path, name: str, *, size: int, seconds_ago: float) -> Path:
    """A key folder as materialise leaves it: files 0444 in nested folders 0555."""
    folder = cache / key_of(name)
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "top.bin").write_bytes(b"x" * (size - size // 2))
    (folder / "a" / "b" / "deep.bin").write_bytes(b"y" * (size // 2))
    for path in [folder / "top.bin", folder / "a" / "b" / "deep.bin"]:
        path.chmod(0o444)
    for path in [folder / "a" / "b", folder / "a", folder]:
        path.chmod(0o555)
    used(folder, seconds_ago)
    return folder


def names(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir()}


# --- evict ----------------------------------------------------------------------------


def test_it_removes_the_least_recently_used_folders_until_the_cache_fits(cache):
    oldest = build(cache, "oldest", size=1000, seconds_ago=3 * HOUR)
    middle = build(cache, "middle", size=1000, seconds_ago=2 * HOUR)
    newest = build(cache, "newest", size=1000, seconds_ago=1 * HOUR)

    assert evict(cache, budget_bytes=3000, in_use=set()) == []
    assert evict(cache, budget_bytes=2500, in_use=set()) == [oldest.name]
    assert names(cache) == {middle.name, newest.name}
    assert evict(cache, budget_bytes=0, in_use=set()) == [middle.name, newest.name]
    assert names(cache) == set()


def test_a_folder_used_again_moves_to_the_back_of_the_line(cache, served_media):
    data = b"cats\n"
    default_storage.save(blob_key(sha(data)), ContentFile(data))
    files = [("README.md", sha(data), len(data))]
    (mount,) = with_read_urls(
        [{"key": content_key(files), "files": [list(f) for f in files]}], seconds=600
    )
    cats = materialise(mount, cache)
    other = build(cache, "other", size=5, seconds_ago=2 * HOUR)
    used(cats, 3 * HOUR)

    assert materialise(mount, cache) == cats  # reused, and so used now
    assert evict(cache, budget_bytes=5, in_use=set()) == [other.name]
    assert names(cache) == {cats.name}


def test_folders_in_use_stay_even_over_the_budget(cache):
    mounted = build(cache, "mounted", size=1000, seconds_ago=5 * HOUR)
    idle = build(cache, "idle", size=1000, seconds_ago=1 * HOUR)

    assert evict(cache, budget_bytes=0, in_use={mounted.name}) == [idle.name]
    assert names(cache) == {mounted.name}
    assert (mounted / "a" / "b" / "deep.bin").read_bytes() == b"y" * 500


def test_folders_used_within_the_grace_period_stay(cache):
    in_flight = build(cache, "in flight", size=1000, seconds_ago=60)
    idle = build(cache, "idle", size=1000, seconds_ago=1 * HOUR)

    assert evict(cache, budget_bytes=0, in_use=set(), used_within=600) == [idle.name]
    assert names(cache) == {in_flight.name}


def test_read_only_folders_are_removed_whole(cache):
    folder = build(cache, "read only", size=10, seconds_ago=HOUR)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o555
    assert stat.S_IMODE((folder / "a" / "b" / "deep.bin").stat().st_mode) == 0o444

    assert evict(cache, budget_bytes=0, in_use=set()) == [folder.name]

    assert not folder.exists()
    assert list(cache.iterdir()) == []  # nothing set aside left behind


def test_anything_but_key_folders_is_left_alone_and_links_are_not_followed(cache, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.bin").write_bytes(b"p" * 1000)
    (cache / key_of("a file")).write_bytes(b"f" * 1000)  # a key's name, but a file
    (cache / key_of("a link")).symlink_to(outside, target_is_directory=True)
    (cache / "notes").mkdir()
    (cache / "notes" / "todo.txt").write_text("keep me")
    (cache / f"{key_of('x')}.backup").mkdir()
    folder = build(cache, "linking out", size=10, seconds_ago=HOUR)
    (folder / "a").chmod(0o755)
    (folder / "a" / "out").symlink_to(outside, target_is_directory=True)
    (folder / "a").chmod(0o555)

    # The link's target is not counted: the cache holds 10 bytes, within a budget of 10.
    assert evict(cache, budget_bytes=10, in_use=set()) == []
    assert evict(cache, budget_bytes=0, in_use=set()) == [folder.name]

    assert names(cache) == {key_of("a file"), key_of("a link"), "notes", f"{key_of('x')}.backup"}
    assert (outside / "precious.bin").read_bytes() == b"p" * 1000
    assert (cache / "notes" / "todo.txt").read_text() == "keep me"


def test_a_folder_being_built_is_left_but_one_left_over_for_a_day_goes(cache):
    building = cache / f"{key_of('building')}.partial-{'0' * 16}"
    (building / "sub").mkdir(parents=True)
    (building / "sub" / "part.bin").write_bytes(b"z" * 1000)
    stale = cache / f"{key_of('crashed')}.partial-{'1' * 16}"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub" / "part.bin").write_bytes(b"z" * 1000)
    (stale / "sub" / "part.bin").chmod(0o444)
    (stale / "sub").chmod(0o555)
    stale.chmod(0o555)
    used(stale, STALE_SECONDS + HOUR)
    abandoned = cache / f"{key_of('evicting')}.evicted-{'2' * 16}"
    abandoned.mkdir()
    used(abandoned, STALE_SECONDS + HOUR)

    assert evict(cache, budget_bytes=0, in_use=set()) == []

    assert names(cache) == {building.name}
    assert (building / "sub" / "part.bin").read_bytes() == b"z" * 1000


def test_a_cache_that_is_not_there_yet_has_nothing_to_evict(tmp_path):
    assert evict(tmp_path / "nowhere", budget_bytes=0, in_use=set()) == []


# --- from the agent, at start ---------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeRuntime]:
    FakeRuntime.reset()
    yield FakeRuntime()
    FakeRuntime.reset()


def spec(name: str, *datasets: dict[str, Any], command: list[str] | None = None) -> Spec:
    return Spec(name=name, image="i", command=command or ["x"], datasets=list(datasets))


def test_a_start_that_builds_evicts_but_keeps_what_runs_and_what_it_mounts(
    served_media, cache, settings, fake
):
    settings.LATTICE_DATASET_CACHE_MAX_GIB = 1 / 1024**3  # one byte: everything is too much
    mounted = with_datasets(
        spec("nb-1", spec_dataset("cats", {"c.txt": b"cats"})), cache, runtime=fake
    )
    fake.start(mounted)
    idle = build(cache, "idle", size=100, seconds_ago=2 * HOUR)
    cats_folder = cache / mounted.datasets[0]["key"]
    used(cats_folder, 3 * HOUR)  # least recently used of all, but mounted by nb-1

    started = with_datasets(
        spec("nb-2", spec_dataset("dogs", {"d.txt": b"dogs"})), cache, runtime=fake
    )

    dogs_folder = cache / started.datasets[0]["key"]
    assert names(cache) == {cats_folder.name, dogs_folder.name}
    assert not idle.exists()
    assert (dogs_folder / "d.txt").read_bytes() == b"dogs"
    assert (cats_folder / "c.txt").read_bytes() == b"cats"


def test_a_start_that_only_reuses_folders_evicts_nothing(served_media, cache, settings, fake):
    settings.LATTICE_DATASET_CACHE_MAX_GIB = 1 / 1024**3
    cats = spec_dataset("cats", {"c.txt": b"cats"})
    with_datasets(spec("nb-1", cats), cache, runtime=fake)
    idle = build(cache, "idle", size=100, seconds_ago=2 * HOUR)

    with_datasets(spec("nb-1", cats), cache, runtime=fake)

    assert idle.exists()


def test_a_stopped_workload_no_longer_holds_its_folder(served_media, cache, settings, fake):
    settings.LATTICE_DATASET_CACHE_MAX_GIB = 1 / 1024**3
    first = with_datasets(
        spec("nb-1", spec_dataset("cats", {"c.txt": b"cats"})), cache, runtime=fake
    )
    state = fake.start(first)
    (cats_folder,) = list(cache.iterdir())
    used(cats_folder, 3 * HOUR)
    assert fake.list_managed()[0].datasets == (str(cats_folder),)
    fake.stop(state)

    with_datasets(spec("nb-2", spec_dataset("dogs", {"d.txt": b"dogs"})), cache, runtime=fake)

    assert not cats_folder.exists()


def test_a_running_local_process_holds_its_folder(served_media, cache, settings, tmp_path):
    settings.LATTICE_DATASET_CACHE_MAX_GIB = 1 / 1024**3
    runtime = LocalProcessRuntime(tmp_path / "runtime")
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    first = with_datasets(
        spec("ds-1", spec_dataset("cats", {"c.txt": b"cats"}), command=sleeper),
        cache,
        runtime=runtime,
    )
    state = runtime.start(first)
    try:
        cats_folder = cache / first.datasets[0]["key"]
        used(cats_folder, 3 * HOUR)
        assert [m.datasets for m in runtime.list_managed()] == [(str(cats_folder),)]

        with_datasets(
            spec("ds-2", spec_dataset("dogs", {"d.txt": b"dogs"})), cache, runtime=runtime
        )
        assert cats_folder.is_dir()

        runtime.stop(state, timeout=3)
        with_datasets(
            spec("ds-3", spec_dataset("owls", {"o.txt": b"owls"})), cache, runtime=runtime
        )
        assert not cats_folder.exists()
    finally:
        runtime.stop(state, timeout=3)


@pytest.mark.docker
def test_a_running_container_holds_its_folder(
    docker_client, busybox_image, served_media, cache, settings
):
    from apps.runtimes.docker import DockerRuntime

    settings.LATTICE_DATASET_CACHE_MAX_GIB = 1 / 1024**3
    runtime = DockerRuntime(docker_client)
    name = f"t-{uuid.uuid4().hex[:8]}"
    workload = Spec(
        name=name,
        image=busybox_image,
        command=["/bin/busybox", "httpd", "-f", "-p", "{port}", "-h", "/www"],
        vcpus=0.5,
        memory_bytes=64 * 1024**2,
        pids_limit=64,
        labels={"team": "acme"},
        datasets=[spec_dataset("cats", {"c.txt": b"cats"})],
    )
    try:
        built = with_datasets(workload, cache, runtime=runtime)
        runtime.start(built)
        cats_folder = cache / built.datasets[0]["key"]
        used(cats_folder, 3 * HOUR)
        (found,) = [m for m in runtime.list_managed() if m.name == name]
        assert found.datasets == (str(cats_folder),)

        with_datasets(
            spec("other", spec_dataset("dogs", {"d.txt": b"dogs"})), cache, runtime=runtime
        )

        assert cats_folder.is_dir()
    finally:
        with contextlib.suppress(NotFound):
            docker_client.containers.get(DockerRuntime.container_name(name)).remove(force=True)
