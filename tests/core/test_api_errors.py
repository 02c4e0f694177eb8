"""API v1's one error format, and how a request shows who it is (a bearer token, or the
browser's session with its CSRF token)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.helpers import bearer, make_token

pytestmark = pytest.mark.django_db(transaction=True)


class TestErrorsAndAuth:
    def test_no_credentials_get_401_in_the_error_format(self):
        response = APIClient().get("/api/v1/me")

        assert response.status_code == 401
        assert response.json() == {
            "error": {
                "code": "not_authenticated",
                "message": "Authentication credentials were not provided.",
            },
        }
        assert response["WWW-Authenticate"].startswith("Bearer")

    def test_a_malformed_header_says_how_to_send_it(self):
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION="Bearer")

        response = api.get("/api/v1/me")

        assert response.status_code == 401
        assert "Authorization: Bearer lat_" in response.json()["error"]["message"]

    def test_validation_errors_name_the_fields(self, alice):
        _, plaintext = make_token(alice)

        response = bearer(plaintext).post("/api/v1/teams/", {"name": ""}, format="json")

        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid"
        assert "name" in error["fields"]

    def test_malformed_json_is_a_400(self, alice):
        _, plaintext = make_token(alice)

        response = bearer(plaintext).post(
            "/api/v1/teams/", data="{not json", content_type="application/json"
        )

        assert response.status_code == 400
        assert response.json()["error"]["code"] == "parse_error"

    def test_me_with_a_token(self, alice):
        _, plaintext = make_token(alice, scopes=["datasets:read"])

        response = bearer(plaintext).get("/api/v1/me")

        assert response.status_code == 403  # /me belongs to the teams area
        _, plaintext = make_token(alice, scopes=["teams:read"])
        body = bearer(plaintext).get("/api/v1/me").json()
        assert body["email"] == "alice@example.com"

    def test_the_browser_session_needs_csrf_for_writes(self, alice):
        api = APIClient(enforce_csrf_checks=True)
        api.force_login(alice)

        assert api.get("/api/v1/me").status_code == 200
        response = api.patch("/api/v1/me", {"name": "A"}, format="json")
        assert response.status_code == 403
        assert "CSRF" in response.json()["error"]["message"]
