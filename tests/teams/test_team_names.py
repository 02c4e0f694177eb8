"""Two teams a person is in never go by the same name unseen (issue 14, defect 7): making or
renaming one to the name of another of theirs is refused, and where two of their teams
still share a name (someone else's team they joined), the slug is shown beside it."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from django.urls import reverse

from apps.core.errors import ServiceError
from apps.teams import services
from apps.teams.models import Membership, Role, Team
from tests.factories import add_member
from tests.helpers import bearer, make_token, reauthenticate

pytestmark = pytest.mark.django_db(transaction=True)


def my_team_names(user) -> list[str]:
    return sorted(m.team.name for m in Membership.objects.unscoped().filter(user=user))


class TestRefused:
    def test_two_creates_at_once_cannot_both_take_the_name(self, charlie):
        # The first create's transaction stays open while the second runs: without a
        # lock the second cannot see the first's team and makes a twin.
        first_done, second_started = threading.Event(), threading.Event()
        outcome: list[object] = []

        def second() -> None:
            try:
                second_started.set()
                services.team_create(actor=charlie, name="research")
                outcome.append("created")
            except ServiceError as exc:
                outcome.append(exc.code)
            finally:
                connection.close()

        thread = threading.Thread(target=second)
        with transaction.atomic():
            services.team_create(actor=charlie, name="Research")
            thread.start()
            second_started.wait(5)
            time.sleep(0.5)  # the second reaches its name check while this one is open
            first_done.set()
        thread.join(10)

        assert outcome == ["duplicate_team_name"]
        assert Team.objects.filter(name__iexact="research").count() == 1

    def test_a_second_team_of_mine_with_the_same_name_is_refused(self, charlie):
        services.team_create(actor=charlie, name="Research")

        with pytest.raises(ServiceError, match='already in a team named "Research"'):
            services.team_create(actor=charlie, name="  research ")

        assert Team.objects.filter(name__iexact="research").count() == 1

    def test_someone_elses_team_may_have_the_name(self, alice, charlie):
        services.team_create(actor=charlie, name="Research")

        team = services.team_create(actor=alice, name="Research")

        assert team.name == "Research"

    def test_the_create_page_says_why_next_to_the_name(self, charlie, client):
        services.team_create(actor=charlie, name="Research")
        client.force_login(charlie)

        response = client.post(reverse("teams:create"), {"name": "Research"})

        assert response.status_code == 409
        assert "already in a team named" in response.content.decode()
        assert my_team_names(charlie).count("Research") == 1

    def test_the_api_refuses_with_a_code(self, charlie):
        services.team_create(actor=charlie, name="Research")
        _, plaintext = make_token(charlie)

        response = bearer(plaintext).post("/api/v1/teams/", {"name": "Research"}, format="json")

        assert response.status_code == 409
        assert response.json()["error"]["code"] == "duplicate_team_name"

    def test_renaming_onto_another_of_my_teams_is_refused_on_the_page(self, charlie, client):
        services.team_create(actor=charlie, name="Research")
        other = services.team_create(actor=charlie, name="Ops")
        client.force_login(charlie)

        response = client.post(reverse("teams:settings", args=[other.slug]), {"name": "Research"})

        assert response.status_code == 409
        assert "already in a team named" in response.content.decode()
        other.refresh_from_db()
        assert other.name == "Ops"

    def test_keeping_the_same_name_is_not_a_clash_with_itself(self, charlie):
        team = services.team_create(actor=charlie, name="Research")

        services.team_rename(team=team, actor=charlie, name="Research")

        team.refresh_from_db()
        assert team.name == "Research"


class TestSlugShownWhereNamesClash:
    @pytest.fixture
    def two_research_teams(self, alice, charlie):
        mine = services.team_create(actor=charlie, name="Research")
        theirs = services.team_create(actor=alice, name="Research")
        add_member(theirs, charlie, Role.MEMBER)
        return mine, theirs

    def test_the_dashboard_and_switcher_show_each_slug(self, charlie, client, two_research_teams):
        mine, theirs = two_research_teams
        client.force_login(charlie)

        page = client.get(reverse("core:dashboard")).content.decode()

        # Both teams appear in the switcher and the dashboard list, each with its slug.
        assert mine.slug != theirs.slug
        assert page.count(f">{mine.slug}<") >= 2
        assert page.count(f">{theirs.slug}<") >= 2

    def test_the_token_form_names_each_team_apart(self, charlie, client, two_research_teams):
        mine, theirs = two_research_teams
        client.force_login(charlie)
        reauthenticate(client)

        page = client.get(reverse("accounts:tokens")).content.decode()

        assert f"Research ({mine.slug})" in page
        assert f"Research ({theirs.slug})" in page

    def test_names_that_differ_only_in_capitals_show_each_slug(self, alice, charlie, client):
        mine = services.team_create(actor=charlie, name="Research")
        theirs = services.team_create(actor=alice, name="research")
        add_member(theirs, charlie, Role.MEMBER)
        client.force_login(charlie)

        page = client.get(reverse("core:dashboard")).content.decode()

        assert page.count(f">{mine.slug}<") >= 2
        assert page.count(f">{theirs.slug}<") >= 2

    def test_names_that_differ_get_no_slug(self, charlie, client):
        team = services.team_create(actor=charlie, name="Research")
        client.force_login(charlie)

        page = client.get(reverse("core:dashboard")).content.decode()

        assert "Research" in page
        assert f">{team.slug}<" not in page
