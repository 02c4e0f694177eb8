"""Save tickets of the targets a job uses (apps.models.services.saves): a dataset version
or files, read under a root other than /notebooks, after the workload exited. The host side
is the agent's real client (run_save) over a live server, reading the fake runtime's
folders; the failures are said in the server's words, never the host's."""

from __future__ import annotations

import pytest

from apps.datasets.models import Dataset, DatasetVersion, Upload
from apps.machines.savefolder import run_save
from apps.models import hooks
from apps.models.models import SaveTicket
from apps.models.services import saves
from apps.runtimes.base import Spec
from apps.runtimes.fake import FakeRuntime
from apps.teams.models import Membership

pytestmark = pytest.mark.django_db(transaction=True)

CHUNK = 64 * 1024


@pytest.fixture
def server(live_server, settings, media):
    settings.LATTICE_INTERNAL_URL = live_server.url
    return live_server


@pytest.fixture
def runtime():
    FakeRuntime.reset()
    yield FakeRuntime()
    FakeRuntime.reset()


def exited(runtime, files):
    state = runtime.start(Spec(name="jb-77", image="x", command=[]))
    runtime.stop(state)
    FakeRuntime.folders[("jb-77", "/outputs")] = files
    return state


def dataset_ticket(team, actor, name="Features"):
    dataset = Dataset.objects.for_team(team).filter(name=name).first()
    if dataset is None:
        from apps.datasets.services import dataset_create

        dataset = dataset_create(team=team, actor=actor, name=name)
    return saves.save_begin_to(
        team=team,
        actor=actor,
        dataset=dataset,
        folder="/outputs",
        root="/outputs",
        source="job",
        source_id=77,
        source_label="job Nightly run 3",
    )


def send(runtime, state, ticket, token, folder=""):
    run_save(runtime, state, folder, saves.ticket_url(ticket), token, root=ticket.root)
    ticket.refresh_from_db()
    return ticket


def test_a_dataset_save_reads_an_exited_workloads_outputs(server, runtime, acme, bob):
    state = exited(runtime, {"a.csv": b"1,2\n", "sub/b.txt": b"b"})
    ended: list[int] = []

    def end(ticket_id: int) -> None:
        ended.append(ticket_id)

    with hooks.save_ended.override(end):
        ticket = send(runtime, state, *dataset_ticket(acme, bob))

    assert ticket.result == SaveTicket.Result.READY
    version = DatasetVersion.objects.for_team(acme).get(pk=ticket.dataset_version_id)
    assert (version.number, version.status) == (1, DatasetVersion.Status.READY)
    assert (version.source, version.source_id, version.source_label) == (
        "job",
        77,
        "job Nightly run 3",
    )
    assert ended == [ticket.pk]


def test_a_gone_container_fails_the_save_in_the_servers_words(server, runtime, acme, bob):
    state = {"name": "jb-never-ran"}
    ticket = send(runtime, state, *dataset_ticket(acme, bob))

    assert ticket.result == SaveTicket.Result.FAILED
    assert ticket.failure == "The run's container was gone before /outputs was saved."
    assert not DatasetVersion.objects.for_team(acme).filter(status="ready").exists()


def test_a_member_removed_mid_save_stops_a_dataset_save(server, runtime, acme, bob):
    state = exited(runtime, {"a.csv": b"1,2\n"})
    ticket, token = dataset_ticket(acme, bob)
    Membership.objects.for_team(acme).filter(user=bob).delete()

    ticket = send(runtime, state, ticket, token)

    assert ticket.result == SaveTicket.Result.FAILED
    assert "may no longer save" in ticket.failure
    assert not DatasetVersion.objects.for_team(acme).filter(status="ready").exists()
    assert not Upload.objects.for_team(acme).filter(status=Upload.Status.OPEN).exists()


def test_a_files_save_hands_the_stored_files_to_the_app_that_asked(server, runtime, acme, alice):
    state = exited(runtime, {"x.bin": b"x" * (CHUNK + 3), "y": b""})
    kept: list[tuple[int, list[str]]] = []

    def keep(ticket, manifest, blobs):
        assert set(blobs) == {entry["sha256"] for entry in manifest}
        kept.append((ticket.pk, sorted(entry["path"] for entry in manifest)))

    ticket, token = saves.save_begin_to(
        team=acme,
        actor=alice,
        folder="/outputs",
        root="/outputs",
        source="job",
        source_id=77,
        source_label="job Nightly run 3",
    )
    with hooks.files_saved.override(keep):
        ticket = send(runtime, state, ticket, token)

    assert ticket.result == SaveTicket.Result.READY
    assert kept == [(ticket.pk, ["x.bin", "y"])]
