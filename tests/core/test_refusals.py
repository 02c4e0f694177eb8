"""One refusal family: every service's refusal is a ServiceError, and the API answers each
with the status and code it carries (apps.core.api.exceptions knows no app's errors)."""

from __future__ import annotations

import pytest
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from apps.accounts.tokens import TokenError
from apps.billing.entitlements import PlanLimitError
from apps.billing.services import BillingConflictError, BillingPermissionError
from apps.core.api.exceptions import api_exception_handler
from apps.core.errors import ServiceError
from apps.datasets.services import DatasetConflictError, DatasetPermissionError
from apps.machines.services import HostError
from apps.notebooks.services import NotebookConflictError, NotebookPermissionError
from apps.teams.invitations import InvitationError
from apps.teams.models import Team
from apps.teams.services import TeamError, TeamPermissionError


def answer(refusal: Exception) -> tuple[int, dict]:
    request = Request(APIRequestFactory().post("/api/v1/teams/acme/"))
    response = api_exception_handler(refusal, {"request": request, "kwargs": {}})
    assert response is not None
    return response.status_code, response.data["error"]


@pytest.mark.parametrize(
    ("refusal", "status", "code"),
    [
        (TeamError("No."), 409, "conflict"),
        (TeamPermissionError("No."), 403, "permission_denied"),
        (InvitationError("invalid", "No."), 404, "invalid"),
        (InvitationError("expired", "No."), 410, "expired"),
        (InvitationError("revoked", "No."), 410, "revoked"),
        (InvitationError("used", "No."), 410, "used"),
        (InvitationError("wrong_account", "No."), 403, "wrong_account"),
        (InvitationError("seats", "No."), 402, "seats"),
        (InvitationError("already_member", "No."), 409, "already_member"),
        (NotebookConflictError("No."), 409, "conflict"),
        (NotebookPermissionError("No."), 403, "permission_denied"),
        (DatasetConflictError("No."), 409, "conflict"),
        (DatasetPermissionError("No."), 403, "permission_denied"),
        (BillingConflictError("No."), 409, "conflict"),
        (BillingPermissionError("No."), 403, "permission_denied"),
    ],
)
def test_the_api_answers_a_refusal_with_its_status_and_code(refusal, status, code):
    assert isinstance(refusal, ServiceError)
    assert answer(refusal) == (status, {"code": code, "message": "No."})


@pytest.mark.parametrize("refusal", [TokenError("No."), HostError("No.")])
def test_a_refusal_without_a_field_is_the_whole_requests_400(refusal):
    assert isinstance(refusal, ServiceError)
    assert answer(refusal) == (
        400,
        {"code": "invalid", "message": "No.", "fields": {"non_field_errors": ["No."]}},
    )


def test_a_plan_limit_says_where_to_upgrade_absolutely():
    refusal = PlanLimitError("Upgrade.", code="plan_concurrency", team=Team(slug="acme"))
    assert isinstance(refusal, ServiceError)
    assert answer(refusal) == (
        402,
        {
            "code": "plan_concurrency",
            "message": "Upgrade.",
            "upgrade_url": "http://testserver/t/acme/billing/",
        },
    )
