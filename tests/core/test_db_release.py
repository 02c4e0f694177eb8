"""Streamed responses and long-lived work hold no database connection while they wait
(apps.core.db, apps.core.middleware; PostgreSQL: an in-memory SQLite connection never
closes. docs/reviews/issue19-streams-and-scheduler.md, R7, has the end-to-end case: 20 log followers
under uvicorn leave the pool to everyone else)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import RequestFactory

from apps.core.db import release_connections
from apps.core.middleware import StreamingReleasesConnectionMiddleware


def _querying(response: HttpResponse | StreamingHttpResponse):
    def view(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return response

    return view


@pytest.mark.django_db(transaction=True)
def test_a_streaming_response_starts_with_its_connection_given_back(postgres):
    middleware = StreamingReleasesConnectionMiddleware(_querying(StreamingHttpResponse([b"x"])))
    response = middleware(RequestFactory().get("/"))
    assert response.streaming
    assert connection.connection is None


@pytest.mark.django_db(transaction=True)
def test_an_ordinary_response_keeps_it_until_the_request_ends(postgres):
    middleware = StreamingReleasesConnectionMiddleware(_querying(HttpResponse(b"x")))
    middleware(RequestFactory().get("/"))
    assert connection.connection is not None  # request_finished gives it back, as always
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_connection_inside_a_transaction_is_left_to_its_owner(postgres):
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        release_connections()
        assert connection.connection is not None
        with connection.cursor() as cursor:  # the transaction goes on
            cursor.execute("SELECT 1")
    release_connections()
    assert connection.connection is None
