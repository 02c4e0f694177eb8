"""Whom each API rate limit counts a request against: its token, else its user, else its
address; and which rate it reads from LATTICE_API_RATES."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from apps.accounts.api.throttling import PerTokenThrottle, PerUserThrottle, UploadChunkThrottle
from apps.accounts.models import PersonalAccessToken, User


def request_as(user: User | AnonymousUser, auth: PersonalAccessToken | None = None) -> Request:
    request = Request(APIRequestFactory().get("/", REMOTE_ADDR="10.1.2.3"))
    request.user = user
    request.auth = auth
    return request


def test_each_limit_counts_a_request_against_its_token_user_or_address(settings):
    settings.LATTICE_API_RATES = {"token": "5/minute", "user": "7/minute"}
    user = User(pk=7)
    by_token = request_as(user, PersonalAccessToken(pk=5))
    by_session = request_as(user)
    anonymous = request_as(AnonymousUser())

    token, per_user, upload = PerTokenThrottle(), PerUserThrottle(), UploadChunkThrottle()

    assert [token.get_cache_key(r, None) for r in (by_token, by_session, anonymous)] == [
        "throttle:token:5",
        None,
        None,
    ]
    assert [per_user.get_cache_key(r, None) for r in (by_token, by_session, anonymous)] == [
        None,
        "throttle:user:7",
        "throttle:anon:10.1.2.3",
    ]
    assert [upload.get_cache_key(r, None) for r in (by_token, by_session, anonymous)] == [
        "throttle:upload:token:5",
        "throttle:upload:user:7",
        "throttle:upload:anon:10.1.2.3",
    ]
    assert (token.rate, per_user.rate, upload.rate) == ("5/minute", "7/minute", "40000/hour")
