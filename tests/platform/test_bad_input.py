"""Malformed, oversized and forged requests get a page a person can act on, never a 500."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_an_oversized_form_gets_413_with_a_message(client, settings):
    response = client.post(
        reverse("account_login"),
        {"login": "a@example.com", "password": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)},
    )

    assert response.status_code == 413
    assert "too much to send at once" in response.content.decode()
    assert "Traceback" not in response.content.decode()


def test_a_form_with_thousands_of_fields_gets_400_with_a_message(client, settings):
    fields = {f"f{i}": "x" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1)}

    response = client.post(reverse("account_login"), fields)

    assert response.status_code == 400
    assert "too many fields" in response.content.decode()


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        'multipart/form-data; boundary="a b\x01"',
        "multipart/form-data; boundary=",
    ],
    ids=["no-boundary", "invalid-boundary", "empty-boundary"],
)
def test_a_malformed_multipart_post_gets_400_not_500(client, content_type):
    response = client.generic(
        "POST",
        reverse("account_login"),
        data=b"--a b\r\nContent-Disposition: form-data; name=login\r\n\r\nx\r\n",
        content_type=content_type,
    )

    assert response.status_code == 400
    assert "could not be understood" in response.content.decode()


def test_a_missing_csrf_token_explains_itself(alice):
    client = Client(enforce_csrf_checks=True)

    response = client.post(reverse("account_login"), {"login": "a@example.com", "password": "x"})

    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()


def test_an_invalid_email_and_absurd_lengths_get_field_messages(client):
    response = client.post(
        reverse("account_signup"),
        {"email": "not-an-email" + "x" * 400, "name": "n" * 500, "password1": "p" * 5000},
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert "valid email address" in body
    assert "at most 150 characters" in body


def test_non_utf8_form_bytes_do_not_break_login(client):
    response = client.generic(
        "POST",
        reverse("account_login"),
        data=b"login=%FF%FE&password=%C3%28",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_an_unknown_page_gets_our_404(client):
    response = client.get("/no/such/page/")

    assert response.status_code == 404
    assert "Page not found" in response.content.decode()


def test_probes_answer_get_and_head_only(client):
    refused = client.post("/readyz")
    assert refused.status_code == 405
    assert {method.strip() for method in refused["Allow"].split(",")} == {"GET", "HEAD"}
    assert client.head("/readyz").status_code == 200
    assert client.head("/healthz").status_code == 200


def test_too_many_signups_from_one_address_get_429_with_a_message(client):
    statuses = [
        client.post(
            reverse("account_signup"),
            {"email": f"user{n}@example.com", "password1": "short"},
        ).status_code
        for n in range(21)
    ]

    # allauth's signup limit: 20 a minute from one address.
    assert statuses[:20] == [200] * 20
    assert statuses[20] == 429
    last = client.post(reverse("account_signup"), {"email": "x@example.com", "password1": "p"})
    assert "Too many attempts" in last.content.decode()


def test_the_500_page_shows_no_traceback(rf):
    from apps.core.views import server_error

    response = server_error(rf.get("/"))

    body = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in body
    assert "Traceback" not in body


@pytest.mark.urls("tests.platform.urls_failing")
def test_a_view_that_raises_gets_the_500_page_without_a_traceback(client):
    client.raise_request_exception = False

    response = client.get("/fails/")

    body = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong on our side" in body
    assert "a bug in a view" not in body
    assert "Traceback" not in body
