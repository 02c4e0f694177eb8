"""The public dataset catalogue: every team's public datasets, to anyone signed in.

Acme (alice, bob) publishes "Cat photos" and keeps "Payroll" private; Globex
(charlie) publishes "Weather". Charlie, in Globex only, browses, searches and
downloads Acme's public dataset, and gets 404 for Acme's private one wherever
he asks; a visitor is sent to log in.
"""

from __future__ import annotations

import io
import tarfile
from typing import TYPE_CHECKING

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.datasets.models import Dataset, DatasetVersion
from apps.notebooks.models import Notebook
from apps.notebooks.services import notebook_create
from tests.dataset_fixtures import make_version

if TYPE_CHECKING:
    from apps.teams.models import Team

pytestmark = pytest.mark.django_db

CATS_V1 = {"cats/tabby.txt": b"a tabby cat"}
CATS_V2 = {"cats/tabby.txt": b"a tabby cat", "cats/siamese.txt": b"a siamese cat, v2"}


def make_dataset(
    team: Team,
    name: str,
    *,
    public: bool = True,
    description: str = "",
    licence: str = "",
    versions: tuple[dict[str, bytes], ...] = (CATS_V1,),
    ready: bool = True,
) -> Dataset:
    """A dataset with ``versions`` made straight in the database (no upload)."""
    visibility = Dataset.Visibility.PUBLIC if public else Dataset.Visibility.PRIVATE
    for number, files in enumerate(versions, start=1):
        version = make_version(
            team,
            name,
            files,
            visibility=visibility,
            ready=ready,
            number=number,
            description=description,
            licence=licence,
        )
    return version.dataset


@pytest.fixture
def cats(acme, media) -> Dataset:
    return make_dataset(
        acme,
        "Cat photos",
        description="Pictures of house cats, labelled by breed.",
        licence="CC-BY-4.0",
        versions=(CATS_V1, CATS_V2),
    )


@pytest.fixture
def payroll(acme, media) -> Dataset:
    return make_dataset(
        acme, "Payroll", public=False, description="Salaries of everyone at Acme, by cat."
    )


@pytest.fixture
def weather(globex, media) -> Dataset:
    return make_dataset(
        globex, "Weather", description="Rainfall by city.", versions=({"rain.csv": b"city,mm\n"},)
    )


@pytest.fixture
def unfinished(acme, media) -> Dataset:
    """Public, but its only version is still uploading: not in the catalogue yet."""
    return make_dataset(acme, "Half a cat", description="Still uploading.", ready=False)


@pytest.fixture
def api(charlie, globex) -> APIClient:
    client = APIClient()
    client.force_login(charlie)
    return client


def names(api: APIClient, query: str = "") -> list[str]:
    response = api.get("/api/v1/datasets/", {"q": query} if query else {})
    assert response.status_code == 200, response.content
    return [d["name"] for d in response.json()["results"]]


def body(response) -> bytes:
    return b"".join(response.streaming_content)


class TestSearch:
    def test_it_lists_every_teams_public_datasets(self, api, cats, weather):
        assert sorted(names(api)) == ["Cat photos", "Weather"]

    def test_it_finds_by_name_in_any_case(self, api, cats, weather):
        assert names(api, "CAT") == ["Cat photos"]

    def test_it_finds_by_description(self, api, cats, weather):
        assert names(api, "rainfall") == ["Weather"]
        assert names(api, "labelled by breed") == ["Cat photos"]

    def test_it_finds_nothing_for_text_no_dataset_holds(self, api, cats, weather):
        assert names(api, "dinosaurs") == []

    def test_private_datasets_never_appear(self, api, cats, payroll):
        assert names(api) == ["Cat photos"]
        assert names(api, "payroll") == []
        assert names(api, "salaries") == []

    def test_datasets_without_a_ready_version_never_appear(self, api, cats, unfinished):
        assert names(api) == ["Cat photos"]
        assert names(api, "uploading") == []

    def test_each_result_describes_its_latest_version(self, api, cats):
        (result,) = api.get("/api/v1/datasets/").json()["results"]

        assert result == {
            "team": "acme",
            "name": "Cat photos",
            "slug": "cat-photos",
            "description": "Pictures of house cats, labelled by breed.",
            "licence": "CC-BY-4.0",
            "latest_version": 2,
            "size": sum(len(b) for b in CATS_V2.values()),
            "file_count": 2,
        }

    def test_the_page_searches_too(self, client, charlie, cats, weather, payroll, unfinished):
        client.force_login(charlie)

        everything = client.get("/datasets/").content.decode()
        found = client.get("/datasets/", {"q": "rainfall"}).content.decode()

        assert "Cat photos" in everything
        assert "Weather" in everything
        assert "Payroll" not in everything
        assert "Half a cat" not in everything
        assert "Weather" in found
        assert "Cat photos" not in found
        assert 'href="/datasets/acme/cat-photos/"' in everything
        assert "CC-BY-4.0" in everything


class TestDetail:
    def test_it_shows_the_dataset_and_its_ready_versions(self, api, cats):
        data = api.get("/api/v1/datasets/acme/cat-photos/").json()

        assert data["team"] == "acme"
        assert data["latest_version"] == 2
        assert [v["number"] for v in data["versions"]] == [2, 1]
        # Who uploaded a version stays the owning team's business.
        assert "author" not in data["versions"][0]

    def test_a_private_dataset_is_404_not_403(self, api, client, charlie, payroll):
        from_api = api.get("/api/v1/datasets/acme/payroll/")
        assert from_api.status_code == 404
        client.force_login(charlie)
        page = client.get("/datasets/acme/payroll/")
        assert page.status_code == 404
        for response in (from_api, page):
            assert "Salaries" not in response.content.decode()  # nothing of its description

    def test_a_dataset_without_a_ready_version_is_404(self, api, unfinished):
        response = api.get("/api/v1/datasets/acme/half-a-cat/")
        assert response.status_code == 404
        assert "Still uploading" not in response.content.decode()

    def test_an_unknown_dataset_is_404(self, api, cats):
        for path in ("/api/v1/datasets/acme/dogs/", "/api/v1/datasets/nobody/cat-photos/"):
            response = api.get(path)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"

    def test_the_page_lists_the_latest_versions_files_with_download_links(
        self, client, charlie, cats
    ):
        client.force_login(charlie)

        page = client.get("/datasets/acme/cat-photos/").content.decode()

        assert "Pictures of house cats" in page
        assert "cats/siamese.txt" in page
        assert 'href="/api/v1/datasets/acme/cat-photos/versions/2/files/cats/siamese.txt"' in page
        assert 'href="/api/v1/datasets/acme/cat-photos/versions/2/archive/"' in page

    def test_the_page_shows_an_older_version_when_asked(self, client, charlie, cats):
        client.force_login(charlie)

        page = client.get("/datasets/acme/cat-photos/", {"version": 1}).content.decode()

        assert "cats/tabby.txt" in page
        assert "cats/siamese.txt" not in page
        assert client.get("/datasets/acme/cat-photos/", {"version": 9}).status_code == 404
        assert client.get("/datasets/acme/cat-photos/", {"version": "x"}).status_code == 404


class TestDownloads:
    """Charlie, in Globex only, downloads Acme's public dataset."""

    def test_the_files_of_a_version(self, api, cats):
        data = api.get("/api/v1/datasets/acme/cat-photos/versions/2/files/").json()

        assert [(f["path"], f["size"]) for f in data["results"]] == [
            ("cats/siamese.txt", 17),
            ("cats/tabby.txt", 11),
        ]

    def test_a_single_file(self, api, cats):
        response = api.get("/api/v1/datasets/acme/cat-photos/versions/2/files/cats/siamese.txt")

        assert response.status_code == 200
        assert body(response) == b"a siamese cat, v2"
        assert 'filename="siamese.txt"' in response["Content-Disposition"]

    def test_a_whole_version_as_a_tar_stream(self, api, cats):
        response = api.get("/api/v1/datasets/acme/cat-photos/versions/1/archive/")

        assert response.status_code == 200
        with tarfile.open(fileobj=io.BytesIO(body(response))) as archive:
            members = {m.name: archive.extractfile(m) for m in archive.getmembers()}
            contents = {name: f.read() for name, f in members.items() if f is not None}
        assert contents == {"cat-photos-v1/cats/tabby.txt": b"a tabby cat"}

    def test_an_unknown_version_or_file_is_404(self, api, cats):
        base = "/api/v1/datasets/acme/cat-photos/versions"
        for path in (f"{base}/3/files/", f"{base}/3/archive/", f"{base}/2/files/cats/dog.txt"):
            response = api.get(path)
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "not_found"

    def test_a_token_needs_datasets_read(self, charlie, globex, cats):
        from apps.accounts.tokens import token_create

        _, reader = token_create(user=charlie, name="reader", scopes=["datasets:read"])
        _, other = token_create(user=charlie, name="other", scopes=["teams:read"])
        api = APIClient()

        api.credentials(HTTP_AUTHORIZATION=f"Bearer {reader}")
        allowed = api.get("/api/v1/datasets/acme/cat-photos/")
        assert allowed.status_code == 200
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {other}")
        refused = api.get("/api/v1/datasets/acme/cat-photos/")
        assert refused.status_code == 403
        assert allowed.json()["name"] == "Cat photos"
        assert set(refused.json()) == {"error"}  # the refusal, and nothing of the dataset


class TestAddToANotebook:
    @pytest.fixture
    def notebooks(self, alice, charlie, acme, globex, catalogue) -> dict[str, Notebook]:
        machine = catalogue["cpu-small"]
        made = {
            name: notebook_create(
                team=team, actor=actor, name=name, template="scipy", machine_type=machine
            )
            for name, team, actor in (
                ("Acme analysis", acme, alice),
                ("Acme old", acme, alice),
                ("Globex lab", globex, charlie),
            )
        }
        Notebook.objects.for_team(acme).filter(pk=made["Acme old"].pk).update(
            deleted_at=timezone.now()
        )
        return made

    def detail_page(self, client, user) -> str:
        client.force_login(user)
        return client.get("/datasets/acme/cat-photos/").content.decode()

    def test_it_lists_the_notebooks_of_teams_where_you_may_manage_them(
        self, client, bob, cats, notebooks
    ):
        page = self.detail_page(client, bob)

        acme_nb = notebooks["Acme analysis"]
        assert "Add to Acme analysis" in page
        assert f'formaction="/t/acme/notebooks/{acme_nb.pk}/datasets/"' in page
        assert "Acme old" not in page  # deleted
        assert "Globex lab" not in page  # not bob's team

    def test_it_offers_every_ready_version_by_id(self, client, bob, cats, notebooks):
        page = self.detail_page(client, bob)

        for version in DatasetVersion.objects.for_team(cats.team_id).filter(dataset=cats):
            assert f'<option value="{version.pk}"' in page
        assert 'name="name"' in page

    def test_another_teams_member_sees_only_his_own_notebooks(
        self, client, charlie, cats, notebooks
    ):
        page = self.detail_page(client, charlie)

        assert "Add to Globex lab" in page
        assert "Acme analysis" not in page

    def test_a_viewer_is_offered_no_notebook(self, client, erin, cats, notebooks):
        page = self.detail_page(client, erin)

        assert "Acme analysis" not in page
        assert 'data-testid="attach-form"' not in page
        assert "You have no notebook to add it to" in page


class TestOutsiders:
    """Charlie sees Acme's public dataset on every catalogue route and never its private one."""

    def routes(self, dataset: Dataset) -> list[tuple[str, str]]:
        """(name, address) of every catalogue route for ``dataset``, version 1 and its file."""
        key = ["acme", dataset.slug]
        return [
            ("page", reverse("catalogue:detail", args=key)),
            ("api", reverse("api:catalogue_dataset", args=key)),
            ("api", reverse("api:catalogue_files", args=[*key, 1])),
            ("api", reverse("api:catalogue_file", args=[*key, 1, "cats/tabby.txt"])),
            ("api", reverse("api:catalogue_archive", args=[*key, 1])),
        ]

    def test_charlie_sees_the_public_dataset_and_404_for_the_private_one(
        self, client, charlie, globex, cats, payroll
    ):
        client.force_login(charlie)

        for _, path in self.routes(cats):
            assert client.get(path).status_code == 200, path
        for _, path in self.routes(payroll):
            assert client.get(path).status_code == 404, path
        index = client.get(reverse("catalogue:index")).content.decode()
        listed = client.get(reverse("api:catalogue")).json()["results"]
        assert "Cat photos" in index
        assert "Payroll" not in index
        assert [d["name"] for d in listed] == ["Cat photos"]
        by_name = client.get(reverse("api:catalogue"), {"q": "Payroll"}).json()["results"]
        assert by_name == []

    def test_a_visitor_is_sent_to_log_in_or_gets_401(self, client, cats, payroll):
        routes = [("page", reverse("catalogue:index")), ("api", reverse("api:catalogue"))]
        routes += self.routes(cats) + self.routes(payroll)

        for kind, path in routes:
            response = client.get(path)
            if kind == "page":
                assert response.status_code == 302, path
                assert response["Location"].startswith("/accounts/login/"), path
            else:
                assert response.status_code == 401, path
