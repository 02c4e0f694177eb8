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


class TestFrameworkErrorsUnderTheAPI:
    """Errors Django answers before any API view runs keep the API's one JSON shape."""

    @pytest.mark.parametrize(
        "path", ["/api/v1/no-such-thing", "/api/v1/teams/x/no-such-thing/", "/api/nope"]
    )
    def test_an_unknown_api_path_is_a_json_404(self, alice, path):
        _, plaintext = make_token(alice)

        response = bearer(plaintext).get(path)

        assert response.status_code == 404
        assert response["Content-Type"].startswith("application/json")
        assert response.json() == {
            "error": {"code": "not_found", "message": "There is nothing at this address."},
        }

    def test_an_unknown_api_path_is_json_without_credentials_too(self):
        response = APIClient().post("/api/v1/no-such-thing", {}, format="json")

        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"

    def test_a_method_the_route_does_not_take_is_a_json_405(self, alice):
        _, plaintext = make_token(alice)

        response = bearer(plaintext).put("/api/v1/teams/", {}, format="json")

        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"

    def test_a_page_outside_the_api_keeps_its_html_404(self, alice, client):
        client.force_login(alice)

        response = client.get("/no-such-page/")

        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")
