"""Managing API tokens: revoking them all at once, what a team-limited token may
manage, and keeping a new token's plaintext out of caches."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.accounts.models import TOKEN_SCOPES, PersonalAccessToken
from apps.accounts.tokens import token_create, token_revoke
from apps.core.models import AuditEntry
from tests.factories import PASSWORD
from tests.helpers import bearer

pytestmark = pytest.mark.django_db


def make(user, name="cli", team=None):
    return token_create(user=user, name=name, scopes=list(TOKEN_SCOPES), team=team)


def works(plaintext: str) -> bool:
    return bearer(plaintext).get("/api/v1/me").status_code == 200


@pytest.fixture
def alices_tokens(alice, acme):
    """An unrestricted token, one limited to acme, and one already revoked."""
    everywhere = make(alice, "laptop")
    acme_only = make(alice, "acme CI", team=acme)
    old, _ = make(alice, "old")
    token_revoke(user=alice, token=old)
    return {"everywhere": everywhere, "acme_only": acme_only, "old": old}


class TestRevokeAll:
    def test_the_page_button_revokes_every_token_and_audits_it(
        self, client, alice, bob, acme, alices_tokens
    ):
        _, bobs = make(bob)
        client.force_login(alice)

        response = client.post(reverse("accounts:tokens_revoke_all"))

        assert response.status_code == 302
        assert not PersonalAccessToken.objects.filter(user=alice, revoked_at=None).exists()
        assert not works(alices_tokens["everywhere"][1])
        assert not works(alices_tokens["acme_only"][1])
        assert works(bobs)
        entry = AuditEntry.objects.for_team(acme).get(action="token.revoked_all")
        assert entry.actor == alice
        assert sorted(entry.data["tokens"]) == ["acme CI", "laptop"]

    def test_the_page_shows_the_button_while_a_token_works(self, client, alice, alices_tokens):
        client.force_login(alice)

        body = client.get(reverse("accounts:tokens")).content.decode()

        assert reverse("accounts:tokens_revoke_all") in body

    def test_the_api_revokes_every_token(self, alice, alices_tokens):
        api = APIClient()
        api.force_login(alice)

        response = api.post("/api/v1/tokens/revoke-all/")

        assert response.status_code == 200
        assert response.json() == {"revoked": 2}
        assert not works(alices_tokens["everywhere"][1])
        assert not works(alices_tokens["acme_only"][1])

    def test_an_unrestricted_token_may_revoke_all_including_itself(self, alice, alices_tokens):
        _, plaintext = alices_tokens["everywhere"]

        response = bearer(plaintext).post("/api/v1/tokens/revoke-all/")

        assert response.json() == {"revoked": 2}
        assert not works(plaintext)
        assert not works(alices_tokens["acme_only"][1])


class TestTeamLimitedToken:
    """A token limited to one team manages only itself (docs/permissions.md)."""

    def test_it_lists_only_itself(self, alice, alices_tokens):
        token, plaintext = alices_tokens["acme_only"]

        listed = bearer(plaintext).get("/api/v1/tokens/").json()["results"]

        assert [t["id"] for t in listed] == [token.pk]

    def test_it_cannot_read_or_revoke_its_users_other_tokens(self, alice, alices_tokens):
        _, plaintext = alices_tokens["acme_only"]
        other, other_plaintext = alices_tokens["everywhere"]
        api = bearer(plaintext)

        assert api.get(f"/api/v1/tokens/{other.pk}/").status_code == 404
        assert api.delete(f"/api/v1/tokens/{other.pk}/").status_code == 404
        refused = api.post("/api/v1/tokens/revoke-all/")

        assert refused.status_code == 403
        assert "only itself" in refused.json()["error"]["message"]
        assert works(other_plaintext)

    def test_it_may_still_revoke_itself(self, alice, alices_tokens):
        token, plaintext = alices_tokens["acme_only"]

        assert bearer(plaintext).delete(f"/api/v1/tokens/{token.pk}/").status_code == 204
        assert not works(plaintext)


class TestNoStore:
    def test_the_api_create_response_is_not_cached(self, alice):
        api = APIClient()
        api.force_login(alice)

        created = api.post(
            "/api/v1/tokens/",
            {"name": "x", "scopes": ["teams:read"], "password": PASSWORD},
            format="json",
        )

        assert created.status_code == 201
        assert created["Cache-Control"] == "no-store"
