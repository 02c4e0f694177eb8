"""The audit log in words a person uses (issue 14): "Alice Smith withdrew the invitation for
dan@example.com", not "invitation.revoked". Every action code the code base records has a
phrase (this test reads every ``audit_record`` call, so a new code cannot slip through);
an unknown code still reads as words. The API keeps the codes and adds the words."""

from __future__ import annotations

import ast
import string
from pathlib import Path

import pytest
from django.urls import reverse

from apps.core.audit import audit_describe, audit_phrases, audit_record
from apps.core.models import AuditEntry
from apps.teams import invitations
from tests.helpers import bearer, make_token

APPS = Path(__file__).resolve().parents[2] / "apps"


def _codes(node: ast.expr, where: str) -> list[str]:
    """The action codes an ``action=`` argument can take: a literal, or a choice of two."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        return _codes(node.body, where) + _codes(node.orelse, where)
    pytest.fail(f"{where}: audit_record's action is not a literal code; give it one")


def audit_calls() -> list[tuple[str, ast.Call]]:
    """Every ``audit_record`` call under apps/, with where it is."""
    calls = []
    for path in sorted(APPS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name == "audit_record":
                calls.append((f"{path.relative_to(APPS.parent)}:{node.lineno}", node))
    return calls


def recorded_codes() -> dict[str, str]:
    """Every action code passed to ``audit_record`` under apps/, with where it is."""
    codes: dict[str, str] = {}
    for where, node in audit_calls():
        for keyword in node.keywords:
            if keyword.arg == "action":
                for code in _codes(keyword.value, where):
                    codes[code] = where
    return codes


def test_every_recorded_action_code_has_a_phrase():
    codes = recorded_codes()

    # The scan finds the code base's calls (33 codes when this was written).
    assert len(codes) >= 30
    missing = sorted(
        f"{code} ({where})" for code, where in codes.items() if not audit_phrases.get(code)
    )
    assert missing == []


def test_every_call_passes_the_details_its_phrase_names():
    """A phrase that names a detail the call does not record falls back to the plain code
    words on every entry: each call passes what its phrase uses (besides who and what)."""
    checked = 0
    wrong = []
    for where, node in audit_calls():
        keywords = {k.arg for k in node.keywords}
        if None in keywords:
            continue  # **details: what they hold is not known here
        action = next(k.value for k in node.keywords if k.arg == "action")
        for code in _codes(action, where):
            phrase = audit_phrases.get(code) or ""
            fields = {field for _, field, _, _ in string.Formatter().parse(phrase) if field}
            missing = fields - keywords - {"actor", "target"}
            checked += 1
            if missing:
                wrong.append(f"{code} ({where}) lacks {sorted(missing)}")
    assert checked >= 30
    assert wrong == []


@pytest.mark.django_db
def test_the_audit_page_says_what_happened_in_words(acme, alice, client):
    invitation = invitations.invitation_create(
        team=acme, actor=alice, email="dan@example.com", role="member", link_base="http://x"
    )
    invitations.invitation_revoke(team=acme, actor=alice, invitation=invitation)
    client.force_login(alice)

    page = client.get(reverse("teams:audit", args=[acme.slug])).content.decode()

    assert "Alice Smith withdrew the invitation for dan@example.com" in page
    assert "Alice Smith invited dan@example.com as member" in page
    assert "<code>invitation.revoked</code>" not in page


@pytest.mark.django_db
def test_an_unknown_code_or_a_missing_detail_still_reads_as_words(acme, alice):
    unknown = audit_record(team=acme, actor=alice, action="widget.frobbed_twice", target="W1")
    renamed = audit_record(team=acme, actor=None, action="team.renamed", target="Acme Two")

    assert audit_describe(unknown) == "Widget frobbed twice: W1 (by Alice Smith)"
    # An entry without the old name the phrase names, and no person behind it.
    assert audit_describe(renamed) == "Team renamed: Acme Two (by Lattice)"


@pytest.mark.django_db
def test_the_api_keeps_the_code_and_adds_the_words(acme, alice):
    AuditEntry.objects.for_team(acme).all().delete()
    audit_record(team=acme, actor=alice, action="team.renamed", target="Acme 2", old="Acme")
    _, plaintext = make_token(alice)

    entry = bearer(plaintext).get("/api/v1/teams/acme/audit/").json()["results"][0]

    assert entry["action"] == "team.renamed"
    assert entry["description"] == "Alice Smith renamed the team from Acme to Acme 2"
