"""Workload tokens (apps.accounts.workload): what the token a notebook or a job finds in its
environment can do, played as the attacker who read it from the container's environment on
its host, asserting on the server's state afterwards."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.accounts.models import PersonalAccessToken
from apps.accounts.workload import (
    TEAM_ENV,
    TOKEN_ENV,
    URL_ENV,
    WORKLOAD_SCOPES,
    workload_env,
    workload_tokens_revoke,
)
from apps.teams.models import Membership
from apps.teams.services import member_remove
from tests.helpers import bearer, make_token

pytestmark = pytest.mark.django_db


def env_for(user, team, workload="nb-1-s1", minutes=60):
    return workload_env(
        user=user,
        team=team,
        workload=workload,
        name="Notebook Train, session 1",
        expires_at=timezone.now() + timedelta(minutes=minutes),
    )


def token_of(workload: str) -> PersonalAccessToken:
    return PersonalAccessToken.objects.get(workload=workload)


def test_it_gives_the_url_the_token_and_the_team(acme, alice, settings):
    settings.LATTICE_WORKLOAD_API_URL = "https://lattice.example.com/"

    env = env_for(alice, acme)

    assert env[URL_ENV] == "https://lattice.example.com"
    assert env[TEAM_ENV] == "acme"
    token = token_of("nb-1-s1")
    assert token.user == alice
    assert token.team == acme
    assert sorted(token.scopes) == sorted(WORKLOAD_SCOPES)
    assert env[TOKEN_ENV] not in str(PersonalAccessToken.objects.values())  # only its hash
    me = bearer(env[TOKEN_ENV]).get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["email"] == alice.email


def test_the_url_defaults_to_where_hosts_reach_the_web_tier(acme, alice, settings):
    settings.LATTICE_WORKLOAD_API_URL = ""
    settings.LATTICE_INTERNAL_URL = "http://10.0.0.5:8000"

    assert env_for(alice, acme)[URL_ENV] == "http://10.0.0.5:8000"


def test_it_works_in_its_team_and_not_in_another(acme, globex, alice, charlie):
    # alice is in globex too: a token limited to acme still cannot act there.
    Membership.objects.create(team=globex, user=alice, role="member")
    api = bearer(env_for(alice, acme)[TOKEN_ENV])

    assert api.get("/api/v1/teams/acme/datasets/").status_code == 200
    assert api.get("/api/v1/teams/globex/datasets/").status_code == 404
    assert api.get("/api/v1/teams/globex/members/").status_code == 404


def test_it_cannot_make_tokens_touch_billing_or_manage_members(acme, alice, bob):
    api = bearer(env_for(alice, acme)[TOKEN_ENV])
    before = PersonalAccessToken.objects.count()

    made = api.post("/api/v1/tokens/", {"name": "mine", "scopes": ["teams:read"]}, format="json")
    billing = api.get("/api/v1/teams/acme/billing/")
    checkout = api.post("/api/v1/teams/acme/billing/checkout/", {}, format="json")
    bobs = Membership.objects.for_team(acme).get(user=bob)
    removed = api.delete(f"/api/v1/teams/acme/members/{bobs.pk}/")
    promoted = api.patch(f"/api/v1/teams/acme/members/{bobs.pk}/", {"role": "admin"})
    invited = api.post("/api/v1/teams/acme/invitations/", {"email": "eve@example.com"})

    assert made.status_code == 403
    assert billing.status_code == 403
    assert checkout.status_code == 403
    assert removed.status_code == 403
    assert promoted.status_code == 403
    assert invited.status_code == 403
    assert PersonalAccessToken.objects.count() == before
    bobs.refresh_from_db()
    assert bobs.role == "member"
    # A token limited to one team sees only itself, and cannot revoke the person's others.
    _, personal = make_token(alice)
    listed = api.get("/api/v1/tokens/").json()["results"]
    assert [t["workload"] for t in listed] == ["nb-1-s1"]
    assert api.post("/api/v1/tokens/revoke-all/").status_code == 403
    assert bearer(personal).get("/api/v1/me").status_code == 200


def test_it_stops_working_once_revoked(acme, alice):
    api = bearer(env_for(alice, acme, workload="jb-7")[TOKEN_ENV])
    assert api.get("/api/v1/teams/acme/jobs/").status_code == 200

    assert workload_tokens_revoke(workloads=["jb-7"]) == 1

    assert api.get("/api/v1/teams/acme/jobs/").status_code == 401
    assert token_of("jb-7").revoked_at is not None


def test_it_expires_at_its_deadline(acme, alice):
    api = bearer(env_for(alice, acme, minutes=60)[TOKEN_ENV])
    assert api.get("/api/v1/me").status_code == 200

    PersonalAccessToken.objects.filter(workload="nb-1-s1").update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )

    assert api.get("/api/v1/me").status_code == 401


def test_a_removed_members_token_fails_at_once(acme, alice, bob):
    api = bearer(env_for(bob, acme)[TOKEN_ENV])
    assert api.get("/api/v1/teams/acme/datasets/").status_code == 200

    member_remove(team=acme, actor=alice, member=Membership.objects.for_team(acme).get(user=bob))

    assert api.get("/api/v1/teams/acme/datasets/").status_code == 401
    assert token_of("nb-1-s1").revoked_at is not None


def test_no_token_for_someone_who_cannot_act_in_the_team(acme, globex, alice, charlie):
    assert env_for(charlie, acme) == {}
    assert env_for(None, acme) == {}
    alice.is_active = False
    alice.save()
    assert env_for(alice, acme) == {}
    assert not PersonalAccessToken.objects.exclude(workload="").exists()


def test_the_person_sees_it_apart_while_it_works_and_may_revoke_it(acme, alice, client):
    env_for(alice, acme, workload="nb-1-s1")
    env_for(alice, acme, workload="nb-1-s2")
    workload_tokens_revoke(workloads=["nb-1-s2"])
    _, personal = make_token(alice)
    api = bearer(personal)

    listed = api.get("/api/v1/tokens/").json()["results"]

    assert sorted(t["workload"] for t in listed) == ["", "nb-1-s1"]
    workload_token = token_of("nb-1-s1")
    assert api.delete(f"/api/v1/tokens/{workload_token.pk}/").status_code == 204
    assert token_of("nb-1-s1").revoked_at is not None
    client.force_login(alice)
    env_for(alice, acme, workload="jb-9")
    page = client.get(reverse("accounts:tokens")).content.decode()
    assert 'data-testid="workload-tokens"' in page
    assert "Notebook Train, session 1" in page


def test_it_acts_no_further_than_a_members_role(acme, alice, bob):
    # Any member who may open alice's notebook can read its token: as alice (the owner) it
    # still may not read the audit log, which bob's role does not allow.
    assert Membership.objects.for_team(acme).get(user=alice).role == "owner"
    audit = f"/api/v1/teams/{acme.slug}/audit/"
    _, own = make_token(alice, scopes=["teams:read"], team=acme)

    refused = bearer(env_for(alice, acme)[TOKEN_ENV]).get(audit)

    assert refused.status_code == 403
    assert "member" in refused.json()["error"]["message"]
    assert bearer(own).get(audit).status_code == 200  # her personal token may
    assert bearer(env_for(alice, acme, "nb-2-s1")[TOKEN_ENV]).get("/api/v1/me").status_code == 200
