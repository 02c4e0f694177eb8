"""Team secrets (apps.teams.secrets): sealed at rest, write-only, named only within the
team, audited on change and on use, masked in workloads' logs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from apps.core.errors import NotFoundError, PermissionDeniedError
from apps.core.models import AuditEntry
from apps.teams.models import RetiredSecret, TeamSecret
from apps.teams.secrets import (
    MASK,
    RETIRED_MASK_DAYS,
    SecretError,
    _bump_generation,
    check_names,
    mask,
    mask_values,
    secret_delete,
    secret_names,
    secret_set,
    secrets_resolve,
)

pytestmark = pytest.mark.django_db

VALUE = "hunter2-s3cr3t-value"


def actions(team):
    return list(
        AuditEntry.objects.for_team(team).order_by("pk").values_list("action", "target", "data")
    )


class TestServices:
    def test_the_value_is_sealed_at_rest(self, acme, alice):
        secret_set(team=acme, actor=alice, name="API_TOKEN", value=VALUE)

        with connection.cursor() as cursor:
            cursor.execute("SELECT sealed FROM teams_teamsecret WHERE name = 'API_TOKEN'")
            (stored,) = cursor.fetchone()
        assert VALUE.encode() not in bytes(stored)
        assert secrets_resolve(acme, ["API_TOKEN"], used_by="test") == {"API_TOKEN": VALUE}

    def test_set_replaces_and_audits_without_the_value(self, acme, alice):
        secret_set(team=acme, actor=alice, name="API_TOKEN", value=VALUE, description="CI")
        secret_set(team=acme, actor=alice, name="API_TOKEN", value="another-value")

        assert secret_names(acme) == ["API_TOKEN"]
        assert secrets_resolve(acme, ["API_TOKEN"], used_by="test") == {
            "API_TOKEN": "another-value"
        }
        log = actions(acme)
        assert [(a, t) for a, t, _ in log if a.startswith("secret.")][:2] == [
            ("secret.created", "API_TOKEN"),
            ("secret.updated", "API_TOKEN"),
        ]
        assert not any(VALUE in str(entry) or "another-value" in str(entry) for entry in log)

    def test_members_and_viewers_cannot_set_or_delete(self, acme, alice, bob, erin):
        secret_set(team=acme, actor=alice, name="API_TOKEN", value=VALUE)
        for who in (bob, erin):
            with pytest.raises(PermissionDeniedError):
                secret_set(team=acme, actor=who, name="API_TOKEN", value="mine")
            with pytest.raises(PermissionDeniedError):
                secret_delete(team=acme, actor=who, name="API_TOKEN")
        assert secrets_resolve(acme, ["API_TOKEN"], used_by="test") == {"API_TOKEN": VALUE}

    def test_an_outsider_cannot_set_a_secret(self, acme, charlie):
        with pytest.raises(PermissionDeniedError):
            secret_set(team=acme, actor=charlie, name="API_TOKEN", value=VALUE)
        assert not TeamSecret.objects.for_team(acme).exists()

    @pytest.mark.parametrize(
        "name",
        ["", "1ABC", "HAS SPACE", "A-B", "LATTICE_RUN_ID", "PATH", "nvidia_visible", "X" * 65],
    )
    def test_names_must_be_usable_environment_variables(self, acme, alice, name):
        with pytest.raises(SecretError) as refused:
            secret_set(team=acme, actor=alice, name=name, value=VALUE)
        assert refused.value.field == "name"

    def test_an_empty_value_is_refused(self, acme, alice):
        with pytest.raises(SecretError):
            secret_set(team=acme, actor=alice, name="EMPTY", value="")

    def test_delete_audits_and_then_a_use_is_refused(self, acme, alice):
        secret_set(team=acme, actor=alice, name="API_TOKEN", value=VALUE)
        secret_delete(team=acme, actor=alice, name="API_TOKEN")

        assert ("secret.deleted", "API_TOKEN") in [(a, t) for a, t, _ in actions(acme)]
        with pytest.raises(SecretError, match="API_TOKEN"):
            secrets_resolve(acme, ["API_TOKEN"], used_by="test")
        with pytest.raises(NotFoundError):
            secret_delete(team=acme, actor=alice, name="API_TOKEN")

    def test_a_use_is_audited_with_what_used_it_and_stamped(self, acme, alice):
        secret_set(team=acme, actor=alice, name="API_TOKEN", value=VALUE)
        secret_set(team=acme, actor=alice, name="DB_URL", value="postgres://x")

        got = secrets_resolve(acme, ["DB_URL", "API_TOKEN"], used_by="job run 12")

        assert got == {"DB_URL": "postgres://x", "API_TOKEN": VALUE}
        used = [(t, d) for a, t, d in actions(acme) if a == "secret.used"]
        assert used == [("job run 12", {"names": "DB_URL, API_TOKEN"})]
        assert all(s.last_used_at is not None for s in TeamSecret.objects.for_team(acme).all())

    def test_no_names_is_no_use(self, acme):
        assert secrets_resolve(acme, [], used_by="notebook x") == {}
        assert not [a for a, _, _ in actions(acme) if a == "secret.used"]

    def test_a_team_cannot_name_another_teams_secret(self, acme, globex, alice, charlie):
        secret_set(team=globex, actor=charlie, name="GLOBEX_KEY", value=VALUE)

        with pytest.raises(SecretError, match="GLOBEX_KEY") as refused:
            check_names(acme, ["GLOBEX_KEY"])
        assert refused.value.field == "secrets"
        with pytest.raises(SecretError):
            secrets_resolve(acme, ["GLOBEX_KEY"], used_by="job run 1")
        assert not [a for a, _, _ in actions(globex) if a == "secret.used"]

    def test_check_names_cleans_the_list(self, acme, alice):
        secret_set(team=acme, actor=alice, name="A_KEY", value=VALUE)
        assert check_names(acme, [" A_KEY", "A_KEY", ""]) == ["A_KEY"]
        with pytest.raises(SecretError):
            check_names(acme, "A_KEY")


class TestMasking:
    def test_values_replace_with_the_mask_and_short_ones_stay(self, acme, alice):
        secret_set(team=acme, actor=alice, name="API_TOKEN", value=VALUE)
        secret_set(team=acme, actor=alice, name="SHORT", value="abc")

        values = mask_values(acme.pk)

        assert values == [VALUE]
        assert mask([f"token={VALUE}!", "abc is fine"], values) == [f"token={MASK}!", "abc is fine"]

    def test_each_line_of_a_multi_line_value_is_masked(self, acme, alice):
        key = "-----BEGIN KEY-----\nAAAAB3NzaC1yc2EAAAADAQAB\n-----END KEY-----\n"
        secret_set(team=acme, actor=alice, name="DEPLOY_KEY", value=key)

        assert mask(["AAAAB3NzaC1yc2EAAAADAQAB"], mask_values(acme.pk)) == [MASK]

    def test_the_longest_value_is_masked_first(self):
        assert mask(["abcdefgh"], ["abcdefgh", "abcd"]) == [MASK]

    def test_a_change_is_seen_at_once_and_old_values_mask_until_they_expire(
        self, acme, alice, django_capture_on_commit_callbacks
    ):
        with django_capture_on_commit_callbacks(execute=True):
            secret_set(team=acme, actor=alice, name="API_TOKEN", value=VALUE)
        assert mask_values(acme.pk) == [VALUE]
        with django_capture_on_commit_callbacks(execute=True):
            secret_set(team=acme, actor=alice, name="API_TOKEN", value="rotated-value")
        # A workload started with the old value may still print it (review finding R11).
        assert sorted(mask_values(acme.pk)) == sorted([VALUE, "rotated-value"])
        with django_capture_on_commit_callbacks(execute=True):
            secret_delete(team=acme, actor=alice, name="API_TOKEN")
        assert sorted(mask_values(acme.pk)) == sorted([VALUE, "rotated-value"])
        RetiredSecret.objects.for_team(acme).update(
            retired_at=timezone.now() - timedelta(days=RETIRED_MASK_DAYS, minutes=1)
        )
        _bump_generation(acme.pk)  # what a change does; the cache holds the old list
        assert mask_values(acme.pk) == []

    def test_values_are_cached_until_the_generation_moves(
        self, acme, alice, django_assert_num_queries
    ):
        secret_set(team=acme, actor=alice, name="API_TOKEN", value=VALUE)
        mask_values(acme.pk)
        with django_assert_num_queries(0):
            assert mask_values(acme.pk) == [VALUE]

    def test_another_teams_values_are_not_used(self, acme, globex, alice, charlie):
        secret_set(team=globex, actor=charlie, name="GLOBEX_KEY", value="globex-only-value")
        secret_set(team=acme, actor=alice, name="API_TOKEN", value=VALUE)
        assert mask_values(acme.pk) == [VALUE]


class TestAPI:
    @pytest.fixture
    def alice_api(self, acme, alice):
        from tests.helpers import bearer, make_token

        return bearer(make_token(alice)[1])

    def test_set_list_replace_delete_and_no_value_ever_returned(self, acme, alice_api):
        url = "/api/v1/teams/acme/secrets/"

        made = alice_api.post(url, {"name": "HF_TOKEN", "value": VALUE}, format="json")
        listed = alice_api.get(url)
        replaced = alice_api.put(
            f"{url}HF_TOKEN/", {"value": "second-value", "description": "HF"}, format="json"
        )
        one = alice_api.get(f"{url}HF_TOKEN/")

        assert made.status_code == 200
        assert [s["name"] for s in listed.json()] == ["HF_TOKEN"]
        assert replaced.json()["description"] == "HF"
        assert one.json()["updated_by"] == "alice@example.com"
        for response in (made, listed, replaced, one):
            assert VALUE not in response.content.decode()
            assert "second-value" not in response.content.decode()
            assert "value" not in response.content.decode()
        assert secrets_resolve(acme, ["HF_TOKEN"], used_by="test") == {"HF_TOKEN": "second-value"}
        assert alice_api.delete(f"{url}HF_TOKEN/").status_code == 204
        assert alice_api.get(f"{url}HF_TOKEN/").status_code == 404
        assert secret_names(acme) == []

    def test_a_bad_name_is_a_400_naming_the_field(self, alice_api):
        response = alice_api.post(
            "/api/v1/teams/acme/secrets/", {"name": "LATTICE_X", "value": VALUE}, format="json"
        )
        assert response.status_code == 400
        assert "name" in response.json()["error"]["fields"]

    def test_a_member_lists_names_but_cannot_set_or_delete(self, acme, alice, bob):
        from tests.helpers import bearer, make_token

        secret_set(team=acme, actor=alice, name="HF_TOKEN", value=VALUE)
        api = bearer(make_token(bob)[1])
        url = "/api/v1/teams/acme/secrets/"

        assert [s["name"] for s in api.get(url).json()] == ["HF_TOKEN"]
        assert api.post(url, {"name": "X_KEY", "value": "x" * 8}, format="json").status_code == 403
        assert api.put(f"{url}HF_TOKEN/", {"value": "mine-now"}, format="json").status_code == 403
        assert api.delete(f"{url}HF_TOKEN/").status_code == 403
        assert secrets_resolve(acme, ["HF_TOKEN"], used_by="test") == {"HF_TOKEN": VALUE}

    def test_a_viewer_cannot_list_names(self, acme, erin):
        from tests.helpers import bearer, make_token

        assert bearer(make_token(erin)[1]).get("/api/v1/teams/acme/secrets/").status_code == 403

    def test_charlie_gets_404_and_changes_nothing(self, acme, alice, charlie, globex):
        from tests.helpers import bearer, make_token

        secret_set(team=acme, actor=alice, name="HF_TOKEN", value=VALUE)
        api = bearer(make_token(charlie)[1])
        url = "/api/v1/teams/acme/secrets/"

        assert api.get(url).status_code == 404
        assert (
            api.post(url, {"name": "HF_TOKEN", "value": "evil-value"}, format="json").status_code
            == 404
        )
        assert api.delete(f"{url}HF_TOKEN/").status_code == 404
        assert secrets_resolve(acme, ["HF_TOKEN"], used_by="test") == {"HF_TOKEN": VALUE}

    def test_a_read_only_token_cannot_set(self, acme, alice):
        from tests.helpers import bearer, make_token

        api = bearer(make_token(alice, scopes=["teams:read"])[1])
        response = api.post(
            "/api/v1/teams/acme/secrets/", {"name": "HF_TOKEN", "value": VALUE}, format="json"
        )
        assert response.status_code == 403
        assert secret_names(acme) == []

    def test_options_answers_without_reading_a_value(self, acme, alice, alice_api):
        secret_set(team=acme, actor=alice, name="HF_TOKEN", value=VALUE)
        for name in ("HF_TOKEN", "MISSING"):
            response = alice_api.options(f"/api/v1/teams/acme/secrets/{name}/")
            assert response.status_code in (200, 404)
            assert VALUE not in response.content.decode()

    def test_the_schema_describes_the_routes_and_no_readable_value(self, client):
        schema = client.get("/api/v1/schema/?format=json").json()

        paths = schema["paths"]
        assert {"post", "get"} <= set(paths["/api/v1/teams/{team_slug}/secrets/"])
        assert {"get", "put", "delete"} <= set(paths["/api/v1/teams/{team_slug}/secrets/{name}/"])
        assert "value" not in schema["components"]["schemas"]["Secret"]["properties"]


class TestPage:
    def test_an_admin_sets_a_secret_and_the_page_never_shows_the_value(self, acme, alice, client):
        client.force_login(alice)
        url = reverse("teams:secrets", args=[acme.slug])

        saved = client.post(url, {"name": "HF_TOKEN", "value": VALUE, "description": "HF"})
        page = client.get(url).content.decode()

        assert saved.status_code == 302
        assert "HF_TOKEN" in page
        assert VALUE not in page
        assert secrets_resolve(acme, ["HF_TOKEN"], used_by="test") == {"HF_TOKEN": VALUE}

    def test_a_refused_name_keeps_the_form_but_not_the_value(self, acme, alice, client):
        client.force_login(alice)

        response = client.post(
            reverse("teams:secrets", args=[acme.slug]), {"name": "PATH", "value": VALUE}
        )

        assert response.status_code == 400
        page = response.content.decode()
        assert "set by Lattice" in page
        assert VALUE not in page
        assert secret_names(acme) == []

    def test_delete_from_the_page(self, acme, alice, client):
        secret_set(team=acme, actor=alice, name="HF_TOKEN", value=VALUE)
        client.force_login(alice)

        client.post(reverse("teams:secret_delete", args=[acme.slug, "HF_TOKEN"]))

        assert secret_names(acme) == []

    def test_a_member_sees_names_and_no_form(self, acme, alice, bob, client):
        secret_set(team=acme, actor=alice, name="HF_TOKEN", value=VALUE)
        client.force_login(bob)
        url = reverse("teams:secrets", args=[acme.slug])

        page = client.get(url).content.decode()

        assert "HF_TOKEN" in page
        assert "Save secret" not in page
        assert client.post(url, {"name": "MINE", "value": VALUE}).status_code == 403
        assert (
            client.post(reverse("teams:secret_delete", args=[acme.slug, "HF_TOKEN"])).status_code
            == 403
        )
        assert secret_names(acme) == ["HF_TOKEN"]

    def test_the_audit_log_says_it_in_words_without_the_value(self, acme, alice, client):
        secret_set(team=acme, actor=alice, name="HF_TOKEN", value=VALUE)
        secrets_resolve(acme, ["HF_TOKEN"], used_by="job run 3")
        client.force_login(alice)

        page = client.get(reverse("teams:audit", args=[acme.slug])).content.decode()

        assert "Alice Smith added the secret HF_TOKEN" in page
        assert "job run 3 used the secrets HF_TOKEN" in page
        assert VALUE not in page


def test_check_names_takes_any_iterable_of_names(acme, alice):
    secret_set(team=acme, actor=alice, name="A_KEY", value=VALUE)
    assert check_names(acme, (n for n in ["A_KEY"])) == ["A_KEY"]
    assert secrets_resolve(acme, iter(["A_KEY"]), used_by="test") == {"A_KEY": VALUE}
