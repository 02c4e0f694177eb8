"""No team learns another's data through datasets (issue 12, item 4).

Charlie, owner of Globex, plays the attacker with his own session against Acme, whose
owner alice stores a private file: naming its hash gets him nothing, not even whether it
is stored; archives are built from the stored bytes, never from what a manifest claims;
names that one system or another would take for another name are refused; sizes are
capped. Each test asserts on the server's state afterwards: rows, stored files, bodies.
"""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest
from django.test import Client

from apps.core.tenancy import team_scope
from apps.datasets.models import (
    Blob,
    Dataset,
    DatasetVersion,
    Upload,
    VersionFile,
    blob_key,
)
from apps.datasets.selectors import version_manifest
from apps.datasets.services import dataset_create
from apps.notebooks import mounts
from apps.notebooks.models import NotebookMount, NotebookSession
from tests.dataset_fixtures import make_version, sha
from tests.notebook_fixtures import make_notebook

pytestmark = pytest.mark.django_db

CHUNK = 64  # bytes: a file of a few hundred bytes makes several chunks
SECRET = b"acme's private customer list: " + b"x" * 200


@pytest.fixture
def alice_api(alice) -> Client:
    client = Client()
    client.force_login(alice)
    return client


@pytest.fixture
def charlie_api(charlie) -> Client:
    client = Client()
    client.force_login(charlie)
    return client


def base(team) -> str:
    return f"/api/v1/teams/{team.slug}"


def dataset(team, actor, name: str, visibility: str = "private") -> str:
    with team_scope(team):
        return dataset_create(team=team, actor=actor, name=name, visibility=visibility).slug


def start(api: Client, team, slug: str, manifest: list[dict[str, Any]]):
    return api.post(
        f"{base(team)}/datasets/{slug}/uploads/",
        {"files": manifest},
        content_type="application/json",
    )


def listed(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [{"path": p, "size": len(b), "sha256": sha(b)} for p, b in files.items()]


def send(api: Client, team, upload: dict, contents: dict[str, bytes]) -> None:
    """PUT every missing chunk of every blob the upload asks for; ``contents`` gives the
    bytes to send for each sha256 (the real ones, or anything else)."""
    size = upload["chunk_size"]
    for blob in upload["blobs"]:
        data = contents[blob["sha256"]]
        for index in blob["missing"]:
            piece = data[index * size : (index + 1) * size]
            response = api.put(
                f"{base(team)}/uploads/{upload['id']}/blobs/{blob['sha256']}/chunks/{index}/",
                data=piece,
                content_type="application/octet-stream",
                HTTP_X_CHUNK_SHA256=sha(piece),
            )
            assert response.status_code == 204, response.content


def complete(api: Client, team, upload_id: int):
    return api.post(f"{base(team)}/uploads/{upload_id}/complete/", content_type="application/json")


def upload(api: Client, team, slug: str, files: dict[str, bytes]) -> dict:
    """A whole upload, as a client does it: start, send what is asked for, complete."""
    response = start(api, team, slug, listed(files))
    assert response.status_code == 201, response.content
    body = response.json()
    send(api, team, body, {sha(b): b for b in files.values()})
    done = complete(api, team, body["id"])
    assert done.status_code == 201, done.content
    return body


def error(response) -> str:
    """The refusal's message and its fields' messages, as one text."""
    body = response.json()["error"]
    texts = [body["message"]]
    for value in body.get("fields", {}).values():
        texts.extend(value if isinstance(value, list) else [value])
    return " ".join(texts)


def ready_versions(team) -> int:
    return DatasetVersion.objects.for_team(team).filter(status="ready").count()


@pytest.fixture
def secret(alice_api, acme, alice, media) -> dict:
    """Acme's private dataset holding SECRET; what charlie may have learnt of it: its hash."""
    slug = dataset(acme, alice, "Customers")
    upload(alice_api, acme, slug, {"customers.csv": SECRET})
    return {"path": "customers.csv", "size": len(SECRET), "sha256": sha(SECRET)}


# --- 1. dedup only within the team ------------------------------------------------------


class TestDedupWithinTheTeam:
    def test_naming_another_teams_hash_asks_for_its_bytes(
        self, charlie_api, globex, charlie, secret, media
    ):
        slug = dataset(globex, charlie, "Loot")

        response = start(charlie_api, globex, slug, [{**secret, "path": "loot.csv"}])

        assert response.status_code == 201
        body = response.json()
        chunks = -(-len(SECRET) // CHUNK)
        assert body["new_bytes"] == len(SECRET)
        assert body["blobs"] == [
            {
                "sha256": secret["sha256"],
                "size": len(SECRET),
                "chunk_count": chunks,
                "missing": list(range(chunks)),
            }
        ]
        # Completing without the bytes is refused: the stored copy is no excuse.
        refused = complete(charlie_api, globex, body["id"])
        assert refused.status_code == 400
        assert f"{chunks} chunks of 1 file still to send" in error(refused)
        assert ready_versions(globex) == 0
        assert not VersionFile.objects.for_team(globex).exists()
        download = charlie_api.get(f"{base(globex)}/datasets/{slug}/versions/1/files/loot.csv")
        assert download.status_code == 404

    def test_other_bytes_sent_under_another_teams_hash_are_refused_and_harm_nothing(
        self, charlie_api, alice_api, acme, globex, charlie, secret, media
    ):
        slug = dataset(globex, charlie, "Loot")
        body = start(charlie_api, globex, slug, [{**secret, "path": "loot.csv"}]).json()
        forged = b"F" * len(SECRET)

        send(charlie_api, globex, body, {secret["sha256"]: forged})
        refused = complete(charlie_api, globex, body["id"])

        assert refused.status_code == 400
        assert "does not hash to it" in error(refused)
        assert ready_versions(globex) == 0
        assert Blob.objects.get(sha256=secret["sha256"]).size == len(SECRET)
        assert (media / blob_key(secret["sha256"])).read_bytes() == SECRET
        kept = alice_api.get(f"{base(acme)}/datasets/customers/versions/1/files/customers.csv")
        assert b"".join(kept.streaming_content) == SECRET

    def test_the_answer_is_the_same_whether_a_hash_is_stored_elsewhere_or_nowhere(
        self, charlie_api, globex, charlie, secret, media
    ):
        nowhere = sha(b"y" * len(SECRET))
        answers = []
        for name, digest in (("Guess one", secret["sha256"]), ("Guess two", nowhere)):
            slug = dataset(globex, charlie, name)
            response = start(
                charlie_api, globex, slug, [{"path": "f", "size": len(SECRET), "sha256": digest}]
            )
            answers.append((response.status_code, response.json()))

        (status_a, stored), (status_b, unknown) = answers
        assert status_a == status_b == 201

        def shape(body: dict) -> dict:
            blobs = [{**b, "sha256": "-"} for b in body["blobs"]]
            return {**body, "id": "-", "dataset": "-", "blobs": blobs}

        assert shape(stored) == shape(unknown)
        assert stored["blobs"][0]["missing"] != []

    def test_a_public_datasets_files_are_not_held_by_the_teams_that_read_them(
        self, charlie_api, alice_api, acme, alice, globex, charlie, media
    ):
        public = dataset(acme, alice, "Open", visibility="public")
        upload(alice_api, acme, public, {"open.txt": b"anyone may read this"})
        slug = dataset(globex, charlie, "Copy")

        body = start(charlie_api, globex, slug, listed({"open.txt": b"anyone may read this"}))

        assert [b["sha256"] for b in body.json()["blobs"]] == [sha(b"anyone may read this")]

    def test_a_team_sends_nothing_for_what_it_holds_in_any_of_its_datasets(
        self, alice_api, acme, alice, secret, media
    ):
        slug = dataset(acme, alice, "Backup")

        body = start(alice_api, acme, slug, [{**secret, "path": "again.csv"}]).json()

        assert body["blobs"] == []
        assert body["new_bytes"] == 0
        assert complete(alice_api, acme, body["id"]).status_code == 201
        assert Blob.objects.count() == 1

    def test_bytes_sent_again_for_a_hash_stored_elsewhere_make_a_version_of_one_blob(
        self, charlie_api, globex, charlie, secret, media
    ):
        """Charlie really has the same bytes: he sends them, they are checked, his version
        holds the one stored blob, and from then on his team holds it."""
        slug = dataset(globex, charlie, "Mine")

        upload(charlie_api, globex, slug, {"mine.csv": SECRET})

        assert ready_versions(globex) == 1
        assert Blob.objects.count() == 1
        again = start(charlie_api, globex, slug, listed({"again.csv": SECRET})).json()
        assert again["blobs"] == []


# --- 2. archives from the stored bytes ----------------------------------------------------


def tar_payload() -> bytes:
    """A file whose bytes are themselves a tar: read as entries, they would write outside
    the archive's folder and link to /etc."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        link = tarfile.TarInfo("../../../home/victim/.config")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc"
        archive.addfile(link)
        escape = tarfile.TarInfo("/etc/cron.d/escaped")
        escape.size = 5
        archive.addfile(escape, io.BytesIO(b"owned"))
    return buffer.getvalue()


def archive_members(response) -> dict[str, tarfile.TarInfo | bytes]:
    assert response.status_code == 200
    data = b"".join(response.streaming_content)
    found: dict[str, Any] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            extracted = archive.extractfile(member) if member.isreg() else None
            found[member.name] = extracted.read() if extracted else member
    return found


class TestArchives:
    def test_listing_a_held_file_with_another_size_is_refused(
        self, charlie_api, globex, charlie, media
    ):
        slug = dataset(globex, charlie, "Trap", visibility="public")
        payload = tar_payload()
        upload(charlie_api, globex, slug, {"payload.bin": payload})

        response = start(
            charlie_api, globex, slug, [{"path": "payload.bin", "size": 1, "sha256": sha(payload)}]
        )

        assert response.status_code == 400
        assert (
            f"payload.bin: listed as 1 bytes, but this team's file with that sha256 is "
            f"{len(payload):,} bytes." in error(response)
        )
        assert ready_versions(globex) == 1
        assert Upload.objects.for_team(globex).count() == 1

    def test_complete_refuses_a_size_the_stored_file_does_not_have(
        self, alice_api, acme, alice, media
    ):
        """Listed with a wrong size while nobody held it, then stored by another upload of
        the team: the first upload, completing, is told which file is wrong."""
        data = b"the real bytes, 37 of them: 123456789"
        first = start(
            alice_api,
            acme,
            dataset(acme, alice, "First"),
            [{"path": "wrong.bin", "size": 3, "sha256": sha(data)}],
        ).json()
        upload(alice_api, acme, dataset(acme, alice, "Second"), {"right.bin": data})

        response = complete(alice_api, acme, first["id"])

        assert response.status_code == 400
        assert "wrong.bin: listed as 3 bytes, but the file with its sha256 is 37 bytes" in error(
            response
        )
        assert ready_versions(acme) == 1
        assert Upload.objects.for_team(acme).get(pk=first["id"]).status == "open"

    @pytest.fixture
    def trap(self, charlie_api, globex, charlie, media) -> str:
        """Globex's public dataset holding the payload, with its row as an upload before
        sizes were checked could leave it: listed as 0 bytes (the header would say 0 and
        the payload's bytes would read as entries)."""
        slug = dataset(globex, charlie, "Trap", visibility="public")
        upload(charlie_api, globex, slug, {"payload.bin": tar_payload(), "z.txt": b"last"})
        VersionFile.objects.for_team(globex).filter(path="payload.bin").update(size=0)
        return slug

    def check_archive(self, members: dict, folder: str) -> None:
        assert set(members) == {f"{folder}/payload.bin", f"{folder}/z.txt"}
        assert members[f"{folder}/payload.bin"] == tar_payload()
        assert members[f"{folder}/z.txt"] == b"last"

    def test_a_teams_archive_takes_each_size_from_the_stored_file(self, charlie_api, globex, trap):
        response = charlie_api.get(f"{base(globex)}/datasets/{trap}/versions/1/archive/")

        self.check_archive(archive_members(response), f"{trap}-v1")

    def test_the_catalogue_archive_takes_each_size_from_the_stored_file(
        self, alice_api, globex, trap
    ):
        response = alice_api.get(f"/api/v1/datasets/{globex.slug}/{trap}/versions/1/archive/")

        self.check_archive(archive_members(response), f"{trap}-v1")

    def test_a_row_whose_path_leaves_the_folder_is_left_out_of_the_archive(
        self, alice_api, globex, trap
    ):
        version = DatasetVersion.objects.for_team(globex).get()
        blob = Blob.objects.get(sha256=sha(b"last"))
        for path in ("../../escaped.txt", "/etc/cron.d/x", "a/../../b"):
            VersionFile.objects.for_team(globex).create(
                team=globex, version=version, path=path, blob=blob, size=4
            )

        response = alice_api.get(f"/api/v1/datasets/{globex.slug}/{trap}/versions/1/archive/")

        self.check_archive(archive_members(response), f"{trap}-v1")


# --- 3. names ---------------------------------------------------------------------------

BAD_NAMES = {
    "invoice\u202etxt.exe": "text-direction characters (U+202E)",
    "a\u2066b\u2069.txt": "(U+2066)",
    "zero\u200bwidth.txt": "(U+200B)",
    "bom\ufeff.txt": "(U+FEFF)",
    "line\u2028break": "(U+2028)",
    "CON": "CON is a device name on Windows",
    "con.txt": "con.txt is a device name on Windows",
    "data/Lpt1.csv": "Lpt1.csv is a device name on Windows",
    "AUX.tar.gz": "AUX.tar.gz is a device name on Windows",
    "nul": "nul is a device name on Windows",
    "logs/COM9.log": "COM9.log is a device name on Windows",
    "prn/readme.md": "prn is a device name on Windows",
    "trailing.": "cannot end with a space or a dot",
    "folder /x": "cannot end with a space or a dot",
}

COLLIDING = [
    ("Data/a.txt", "data/A.txt"),
    ("caf\u00e9.txt", "cafe\u0301.txt"),  # NFC and NFD: one name on macOS
    ("STRASSE.md", "stra\u00dfe.md"),  # case folding: ß is ss
]


class TestNames:
    @pytest.mark.parametrize(("path", "reason"), list(BAD_NAMES.items()))
    def test_a_name_other_systems_misread_is_refused_naming_it(
        self, alice_api, acme, alice, media, path, reason
    ):
        slug = dataset(acme, alice, "Names")

        response = start(alice_api, acme, slug, [{"path": path, "size": 1, "sha256": sha(b"1")}])

        assert response.status_code == 400
        assert reason in error(response)
        assert ascii(path)[1:-1][:20] in error(response)  # names it, escaped
        assert Upload.objects.for_team(acme).count() == 0

    @pytest.mark.parametrize(("first", "second"), COLLIDING)
    def test_two_paths_that_are_one_name_ignoring_case_or_form_are_refused(
        self, alice_api, acme, alice, media, first, second
    ):
        slug = dataset(acme, alice, "Names")
        manifest = [
            {"path": first, "size": 1, "sha256": sha(b"1")},
            {"path": second, "size": 1, "sha256": sha(b"2")},
        ]

        response = start(alice_api, acme, slug, manifest)

        assert response.status_code == 400
        message = error(response)
        assert "are one name where case or the Unicode form of letters is ignored" in message
        assert ascii(first)[1:-1] in message  # both named, escaped: they look alike
        assert ascii(second)[1:-1] in message
        assert Upload.objects.for_team(acme).count() == 0

    def test_a_file_and_a_folder_that_differ_only_in_case_are_refused(
        self, alice_api, acme, alice, media
    ):
        slug = dataset(acme, alice, "Names")
        manifest = [
            {"path": "Images", "size": 1, "sha256": sha(b"1")},
            {"path": "images/cat.jpg", "size": 1, "sha256": sha(b"2")},
        ]

        response = start(alice_api, acme, slug, manifest)

        assert response.status_code == 400
        assert "Images is both a file and a folder." in error(response)

    def test_a_path_is_kept_in_nfc(self, alice_api, acme, alice, media):
        slug = dataset(acme, alice, "Names")

        upload(alice_api, acme, slug, {"cafe\u0301/re\u0301sume\u0301.txt": b"cv"})

        assert list(VersionFile.objects.for_team(acme).values_list("path", flat=True)) == [
            "caf\u00e9/r\u00e9sum\u00e9.txt"
        ]
        download = alice_api.get(
            f"{base(acme)}/datasets/{slug}/versions/1/files/caf\u00e9/r\u00e9sum\u00e9.txt"
        )
        assert b"".join(download.streaming_content) == b"cv"

    @pytest.mark.parametrize("name", ["Report\u202egnp.exe", "Zero\u200bWidth", "Bell\x07"])
    def test_a_dataset_name_with_hidden_characters_is_refused(
        self, alice_api, acme, alice, media, name
    ):
        made = alice_api.post(
            f"{base(acme)}/datasets/", {"name": name}, content_type="application/json"
        )
        slug = dataset(acme, alice, "Plain")
        renamed = alice_api.patch(
            f"{base(acme)}/datasets/{slug}/", {"name": name}, content_type="application/json"
        )

        for response in (made, renamed):
            assert response.status_code == 400
            assert "invisible or text-direction characters" in error(response)
        with team_scope(acme):
            assert list(Dataset.objects.values_list("name", flat=True)) == ["Plain"]


# --- 4. sizes ---------------------------------------------------------------------------


class TestSizes:
    @pytest.mark.parametrize("size", [2**70, 2**63, 2**62, 5 * 1024**4 + 1])
    def test_a_file_over_5_tib_is_refused_naming_it(self, alice_api, acme, alice, media, size):
        slug = dataset(acme, alice, "Huge")

        response = start(
            alice_api, acme, slug, [{"path": "big.bin", "size": size, "sha256": "a" * 64}]
        )

        assert response.status_code == 400
        assert "big.bin: a file is at most 5 TiB" in error(response)
        assert f"{size:,} bytes" in error(response)
        assert Upload.objects.for_team(acme).count() == 0

    def test_a_file_of_5_tib_is_taken(self, alice_api, acme, alice, media):
        slug = dataset(acme, alice, "Huge")

        response = start(
            alice_api, acme, slug, [{"path": "big.bin", "size": 5 * 1024**4, "sha256": "a" * 64}]
        )

        assert response.status_code == 201, response.content
        with team_scope(acme):
            assert Upload.objects.get().blobs.get().size == 5 * 1024**4

    def test_files_adding_up_to_more_than_a_pib_are_refused(self, alice_api, acme, alice, media):
        slug = dataset(acme, alice, "Huge")
        manifest = [
            {"path": f"part-{i}.bin", "size": 4 * 1024**4, "sha256": f"{i:064x}"}
            for i in range(300)
        ]

        response = start(alice_api, acme, slug, manifest)

        assert response.status_code == 400
        assert "a version holds at most 1 PiB" in error(response)
        assert Upload.objects.for_team(acme).count() == 0

    @pytest.mark.parametrize("size", ["12", 1.5, -1, True, None, [], 1e30])
    def test_a_size_that_is_not_a_whole_number_of_bytes_is_refused(
        self, alice_api, acme, alice, media, size
    ):
        slug = dataset(acme, alice, "Huge")

        response = start(
            alice_api, acme, slug, [{"path": "f.bin", "size": size, "sha256": "a" * 64}]
        )

        assert response.status_code == 400
        assert "f.bin: size is a whole number of bytes." in error(response)

    def test_an_empty_file_must_have_the_empty_hash(self, alice_api, acme, alice, secret, media):
        """Listed as empty under a file's hash (one the team holds, even): refused before
        anything is made."""
        slug = dataset(acme, alice, "Empty")

        response = start(
            alice_api, acme, slug, [{"path": "e", "size": 0, "sha256": secret["sha256"]}]
        )

        assert response.status_code == 400
        assert f"e: an empty file's sha256 is {sha(b'')}." in error(response)


# --- 5. the rest: mounts and the hosts' dataset cache -----------------------------------


@pytest.fixture
def notebooks(acme, alice, globex, charlie, catalogue) -> dict:
    made = {}
    for team, actor in ((acme, alice), (globex, charlie)):
        with team_scope(team):
            made[team.slug] = make_notebook(team, actor, "Work")
    return made


def test_another_teams_unfinished_version_reads_as_missing(
    charlie_api, alice_api, acme, alice, globex, notebooks, media
):
    """A public dataset's version still uploading is Acme's business: attaching it answers
    exactly as attaching a version that does not exist."""
    slug = dataset(acme, alice, "Open", visibility="public")
    started = start(alice_api, acme, slug, listed({"a.txt": b"not yet"})).json()
    unfinished = Upload.objects.for_team(acme).get(pk=started["id"]).version_id
    url = f"{base(globex)}/notebooks/{notebooks['globex'].pk}/datasets/"

    answers = [
        charlie_api.post(url, {"version": pk}, content_type="application/json")
        for pk in (unfinished, unfinished + 1000)
    ]

    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].json() == answers[1].json()
    with team_scope(globex):
        assert not NotebookMount.objects.exists()


def test_two_teams_with_the_same_files_get_two_folders_on_a_host(
    charlie_api, alice_api, acme, alice, globex, charlie, notebooks, media
):
    """How fast a notebook's datasets are ready must not tell a team that another team on
    that host holds the same files: each team's versions have their own content key, and
    a public version is built under its owner's key whoever mounts it."""
    files = {"data/train.csv": b"a,b\n1,2\n"}
    ours = dataset(acme, alice, "Ours", visibility="public")
    upload(alice_api, acme, ours, files)
    theirs = dataset(globex, charlie, "Theirs")
    upload(charlie_api, globex, theirs, files)
    with team_scope(acme):
        acme_version = DatasetVersion.objects.get(dataset__slug=ours)
        mounts.mount_add(team=acme, actor=alice, notebook=notebooks["acme"], version=acme_version)
    with team_scope(globex):
        globex_version = DatasetVersion.objects.get(dataset__slug=theirs)
        mounts.mount_add(
            team=globex, actor=charlie, notebook=notebooks["globex"], version=globex_version
        )
        mounts.mount_add(
            team=globex,
            actor=charlie,
            notebook=notebooks["globex"],
            version=acme_version,
            name="open",
        )

    keys = {}
    for team in ("acme", "globex"):
        session = NotebookSession(notebook=notebooks[team], team=notebooks[team].team)
        keys[team] = {m["name"]: m["key"] for m in mounts.mounts_for_spec(session)}

    assert keys["acme"][ours] != keys["globex"][theirs]
    assert keys["globex"]["open"] == keys["acme"][ours]


def test_a_version_manifest_is_read_only_by_a_team_that_may_read_the_version(
    media: Any, acme: Any, globex: Any
) -> None:
    private = make_version(acme, "secret", {"a.csv": b"private bytes"})
    public = make_version(
        acme, "open", {"b.csv": b"public bytes"}, visibility=Dataset.Visibility.PUBLIC
    )
    unfinished = make_version(
        acme, "later", {"c.csv": b"not yet"}, visibility=Dataset.Visibility.PUBLIC, ready=False
    )

    # Acme reads its own, whatever their state; Globex only the public, ready one.
    assert version_manifest(team=acme, version_id=private.pk) == [
        ("a.csv", sha(b"private bytes"), 13)
    ]
    assert version_manifest(team=acme, version_id=unfinished.pk) == [("c.csv", sha(b"not yet"), 7)]
    assert version_manifest(team=globex, version_id=public.pk) == [
        ("b.csv", sha(b"public bytes"), 12)
    ]
    assert version_manifest(team=globex, version_id=private.pk) == []
    assert version_manifest(team=globex.pk, version_id=unfinished.pk) == []
