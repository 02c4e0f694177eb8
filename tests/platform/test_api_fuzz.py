"""Property-based run of the whole API from its own OpenAPI schema (schemathesis).

Every operation gets generated requests, valid and invalid, sent with an
owner's token (alice, acme) through Django's WSGI handler; none may answer
with a 5xx. The number of examples is bounded so CI stays quick
(LATTICE_FUZZ_EXAMPLES, default 25 per operation).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from apps.accounts.models import TOKEN_SCOPES
from apps.accounts.tokens import token_create

EXAMPLES = int(os.environ.get("LATTICE_FUZZ_EXAMPLES", "25"))

# Loading the schema needs no database: the schema view is public and static.
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", get_wsgi_application())


@pytest.fixture
def alice_token(db, acme, alice, globex):
    _, plaintext = token_create(user=alice, name="fuzz", scopes=list(TOKEN_SCOPES))
    return plaintext


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Requests go through the WSGI handler in this thread and this test's
    transaction; stop it closing the connection at each request's end, as
    Django's own test client does."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_operation_answers_with_a_server_error(case, alice_token, settings):
    settings.LATTICE_API_RATES = {
        "token": "100000/hour",
        "user": "100000/hour",
        "upload": "100000/hour",
    }
    # Aim most requests at a team that exists, so they reach the real code
    # rather than stopping at "no such team".
    if case.path_parameters and "team_slug" in case.path_parameters:
        case.path_parameters["team_slug"] = "acme"
    response = case.call(headers={"Authorization": f"Bearer {alice_token}"})
    case.validate_response(response, checks=[not_a_server_error])
