"""Fail-closed tenancy: a tenant-owned query without a team scope raises."""

from __future__ import annotations

import pytest
from django.views import View
from django_scopes import ScopeError

from apps.core.models import AuditEntry
from apps.core.tenancy import team_scope, unscoped
from apps.teams.models import Membership
from apps.teams.scope import TeamViewMixin

pytestmark = pytest.mark.django_db


def test_a_query_without_a_scope_raises(acme):
    with pytest.raises(ScopeError):
        list(Membership.objects.all())
    with pytest.raises(ScopeError):
        Membership.objects.filter(role="owner").count()
    with pytest.raises(ScopeError):
        AuditEntry.objects.first()


def test_inside_a_scope_only_that_teams_rows_come_back(acme, globex):
    with team_scope(globex):
        emails = sorted(m.user.email for m in Membership.objects.all())

    assert emails == ["charlie@example.org"]


def test_the_named_escape_hatches(acme, globex):
    assert Membership.objects.for_team(acme).count() == 2
    assert Membership.objects.unscoped().count() == 3
    with unscoped():
        assert Membership.objects.count() == 3


def test_a_team_view_may_not_replace_dispatch_or_get_queryset():
    with pytest.raises(TypeError, match="get_queryset"):

        class Sneaky(TeamViewMixin, View):
            def get_queryset(self):
                return Membership.objects.unscoped().all()

    with pytest.raises(TypeError, match="dispatch"):

        class Sneakier(TeamViewMixin, View):
            def dispatch(self, request, *args, **kwargs):
                return super().dispatch(request, *args, **kwargs)


def test_a_mixin_cannot_slip_a_get_queryset_past_the_seal():
    class Leaky:
        def get_queryset(self):
            return Membership.objects.unscoped().all()

    with pytest.raises(TypeError, match="get_queryset"):

        class Sneaky(Leaky, TeamViewMixin, View):
            pass
