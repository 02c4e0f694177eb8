"""The factories make rows the app takes for its own: saved, in the right team, and (for a
token) accepted by the API as a token the app made."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.core.tenancy import team_scope
from apps.datasets.models import DatasetVersion, VersionFile
from apps.machines.models import GPUAllocation
from apps.notebooks.models import NotebookMount, NotebookSession
from apps.teams.models import Invitation, Membership, Role
from tests import factories

pytestmark = pytest.mark.django_db

EVERY_FACTORY = [
    factories.UserFactory,
    factories.EmailAddressFactory,
    factories.PersonalAccessTokenFactory,
    factories.TeamFactory,
    factories.MembershipFactory,
    factories.InvitationFactory,
    factories.MachineTypeFactory,
    factories.HostFactory,
    factories.GPUDeviceFactory,
    factories.PlacementFactory,
    factories.GPUAllocationFactory,
    factories.DatasetFactory,
    factories.DatasetVersionFactory,
    factories.BlobFactory,
    factories.VersionFileFactory,
    factories.NotebookMountFactory,
    factories.NotebookFactory,
    factories.NotebookSessionFactory,
    factories.PlanFactory,
    factories.MachinePriceFactory,
    factories.BillingAccountFactory,
    factories.SubscriptionFactory,
]


@pytest.mark.parametrize("factory", EVERY_FACTORY, ids=lambda f: f.__name__)
def test_each_factory_saves_two_distinct_rows(factory):
    first, second = factory.create(), factory.create()

    model = factory._meta.model
    assert None not in (first.pk, second.pk)
    assert first.pk != second.pk
    manager = getattr(model.objects, "unscoped", None)
    rows = manager() if manager else model.objects
    assert rows.filter(pk__in=[first.pk, second.pk]).count() == 2


def test_team_owned_rows_are_found_in_their_teams_scope():
    session = factories.NotebookSessionFactory.create()
    mount = factories.NotebookMountFactory.create(notebook=session.notebook)
    file = factories.VersionFileFactory.create()
    invitation = factories.InvitationFactory.create(team=session.team)

    with team_scope(session.team):
        assert NotebookSession.objects.get() == session
        assert NotebookMount.objects.get() == mount
        assert Invitation.objects.get() == invitation
        assert not VersionFile.objects.exists()  # another team's
    with team_scope(file.team):
        assert VersionFile.objects.get() == file
        assert DatasetVersion.objects.get() == file.version
    assert session.machine_type == session.notebook.machine_type


def test_a_gpu_is_allocated_on_its_placements_host():
    allocation = factories.GPUAllocationFactory.create()

    assert allocation.gpu.host == allocation.placement.host
    assert GPUAllocation.objects.filter(gpu=allocation.gpu, active=True).count() == 1


def test_add_member_gives_the_role():
    team, user = factories.TeamFactory.create(), factories.UserFactory.create()

    factories.add_member(team, user, Role.VIEWER)

    assert Membership.objects.for_team(team).get(user=user).role == Role.VIEWER


def test_a_token_from_the_factory_is_accepted_and_its_scopes_hold():
    everything = factories.PersonalAccessTokenFactory.create()
    read_only = factories.PersonalAccessTokenFactory.create(scopes=["teams:read"])
    api = APIClient()

    api.credentials(HTTP_AUTHORIZATION=f"Bearer {everything.plaintext}")
    assert api.get("/api/v1/me").json()["email"] == everything.user.email
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {read_only.plaintext}")
    assert api.post("/api/v1/teams/", {"name": "New"}, format="json").status_code == 403
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {everything.plaintext}x")
    assert api.get("/api/v1/me").status_code == 401


def test_a_user_from_the_factory_signs_in_with_the_password(client):
    user = factories.UserFactory.create()

    assert client.login(email=user.email, password=factories.PASSWORD)
    assert user.emailaddress_set.get().verified
